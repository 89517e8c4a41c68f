"""The baseline web app: the least a Flask view can do, served by gunicorn as ours is."""
from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, World!"
