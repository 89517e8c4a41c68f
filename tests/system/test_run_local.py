"""`make run`: its private Redis needs the password it was started with, and that password
is on no command line (any local user can read those); the links it mails point at its port."""
from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError

from scripts.run_local import free_port, local_environment, start_redis


def test_make_runs_redis_answers_only_with_its_password(tmp_path):
    process, url = start_redis(free_port(0), "--save", "", "--dir", str(tmp_path), stdout=subprocess.DEVNULL)
    try:
        parts = urlsplit(url)
        assert len(parts.password) >= 32
        assert Redis.from_url(f"{url}/0").ping()
        with pytest.raises(AuthenticationError):
            Redis(host="127.0.0.1", port=parts.port).ping()
        assert parts.password.encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
    finally:
        process.terminate()
        process.wait(5)


def test_make_run_points_links_at_the_port_it_serves_on(tmp_path):
    no_dotenv = tmp_path / "absent.env"
    assert local_environment({"PORT": "5055"}, no_dotenv)["BASE_URL"] == "http://127.0.0.1:5055"
    assert local_environment({}, no_dotenv)["BASE_URL"] == "http://127.0.0.1:5000"
    assert local_environment({"PORT": "5055", "BASE_URL": ""}, no_dotenv)["BASE_URL"] == "http://127.0.0.1:5055"
    given = local_environment({"PORT": "5055", "BASE_URL": "https://gate.example.com"}, no_dotenv)
    assert given["BASE_URL"] == "https://gate.example.com"


def test_make_run_keeps_a_base_url_set_in_dotenv(tmp_path):
    """The app reads .env too, but a BASE_URL in make run's environment would win over it."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("RELEASEGATE_ENV=development\nBASE_URL=https://gate.example.com\n")
    assert local_environment({"PORT": "5055"}, dotenv)["BASE_URL"] == "https://gate.example.com"
    assert local_environment({"BASE_URL": "http://127.0.0.1:6000"}, dotenv)["BASE_URL"] == "http://127.0.0.1:6000"
