"""Dashboard and environment pages."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

pages = Blueprint("pages", __name__)


@pages.get("/")
@login_required
def dashboard():
    return render_template("dashboard.html")
