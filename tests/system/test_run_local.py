"""`make run`'s private Redis: it needs the password it was started with, and that password
is on no command line (any local user can read those)."""
from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError

from scripts.run_local import free_port, start_redis


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
