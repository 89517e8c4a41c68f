"""The API against its OpenAPI document (webapp/openapi.yaml), with schemathesis, on a live server.

Starts a private Redis, migrates a fresh SQLite database in a temporary directory, loads the
demo data (project shop with qa and prod, users admin, reviewer, dba and viewer, group dba),
makes an admin API token and one release, serves the app with gunicorn on 127.0.0.1 and runs
`schemathesis run` against GET /api/v1/openapi.json with that token: a fixed number of examples
per operation, the stateful phase following the document's links, and a hard time limit. It
fails when an answer is a server error, or its status, content type or JSON is not what the
document says. No worker runs: releases stay where the web process puts them.

    .venv/bin/python scripts/api_contract.py [extra schemathesis options, e.g. --seed 1]
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.run_local import ROOT, free_port, start_redis, wait_for_port  # noqa: E402

EXAMPLES_PER_OPERATION = 20
TIME_LIMIT_SECONDS = 150  # the whole schemathesis run; it is stopped (and fails) past that
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")
BIN = Path(sys.executable).parent


def flask(env: dict[str, str], *args: str) -> str:
    finished = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], env=env, cwd=ROOT,
                              check=True, capture_output=True, text=True)
    return finished.stdout.strip()


def trigger_a_release(base: str, token: str) -> None:
    """One release in shop/qa, so the release operations have a row to find (release 1)."""
    body = {"description": "contract", "resources": [{"resourceType": "service", "resourceName": "api",
                                                      "resourcePath": "services/api.json",
                                                      "changeType": "UPDATE_IN_PLACE"}]}
    request = urllib.request.Request(f"{base}/api/v1/projects/shop/environments/qa/releases",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202, response.status


def schemathesis(base: str, token: str, extra: list[str]) -> list[str]:
    return [str(BIN / "schemathesis"), "run", f"{base}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            "--checks", ",".join(CHECKS),
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            "--phases", "examples,coverage,fuzzing,stateful",
            "--workers", "1",
            "--request-timeout", "10",
            "--max-redirects", "0",  # never anywhere but the server under test
            "--seed", "15",  # the same cases every run; pass another --seed to explore
            *extra]


def main(extra: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="rg-contract-") as scratch:
        scratch = Path(scratch)
        redis, redis_url = start_redis(free_port(0), "--save", "", "--dir", str(scratch), stdout=subprocess.DEVNULL)
        port = free_port(0)
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "RELEASEGATE_ENV": "development", "RELEASEGATE_INSTANCE": str(scratch / "instance"),
               "DATABASE_URL": f"sqlite:///{scratch / 'contract.db'}", "REDIS_URL": f"{redis_url}/0",
               "SECRET_KEY": secrets.token_urlsafe(32), "BASE_URL": base, "ARGON2_TIME_COST": "1",
               "ARGON2_MEMORY_KIB": "8192"}
        server = None
        try:
            flask(env, "db", "upgrade")
            flask(env, "demo")
            token = flask(env, "tokens", "create", "admin")
            server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                                       "--workers", "2", "--log-level", "warning", "wsgi:app"], env=env, cwd=ROOT)
            wait_for_port(port, 20)
            trigger_a_release(base, token)
            started = time.monotonic()
            try:
                finished = subprocess.run(schemathesis(base, token, extra),
                                          cwd=scratch, timeout=TIME_LIMIT_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"schemathesis did not finish within {TIME_LIMIT_SECONDS} s; it was stopped.", file=sys.stderr)
                return 1
            print(f"schemathesis took {time.monotonic() - started:.0f} s.")
            return finished.returncode
        finally:
            for process in (server, redis):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
