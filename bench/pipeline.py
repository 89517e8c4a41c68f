"""Measurements 1 and 2: how soon a hook starts after a trigger, and releases per second through
the whole pipeline, each against a bare `subprocess.run` of the same hook in the same run."""
from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from redis import Redis
from rq import Queue, Worker

from .client import Api
from .repo import first_line_time
from .stack import App, Stack, hook_python, wait_until

TERMINAL = ("APPROVED", "REJECTED", "CANCELLED", "SUCCEEDED", "FAILED", "TIMED_OUT")
CHANGE = [{"resourceType": "service", "resourceName": "api", "resourcePath": "services/service-00.json",
           "changeType": "UPDATE_IN_PLACE"}]
PASSWORD = "bench-password-1"


class Pipeline:
    """A Releasegate instance with one worker and one environment (`pipeline/qa`) whose hook exits 0."""

    def __init__(self, stack: Stack, repo: Path, commit: str) -> None:
        self.stack, self.commit = stack, commit
        self.app: App = stack.app("pipeline")
        stack.flask(self.app, "users", "create", "bench", "--email", "bench@localhost", "--password", PASSWORD,
                    "--admin")
        token = stack.flask(self.app, "tokens", "create", "bench")
        self.server = stack.serve_app(self.app)
        self.worker = stack.start_worker(self.app)
        self.api = Api(self.server.url, token)
        self.api.call("POST", "/projects", {"name": "pipeline", "repo": str(repo), "branch": "main"}, expect=201)
        self.api.call("POST", "/projects/pipeline/environments", {"name": "qa", "release_stream": "QA"}, expect=201)
        self.baseline = _Baseline(stack.scratch / "baseline", repo, commit)
        self.redis = Redis.from_url(self.app.env["REDIS_URL"])
        for _ in range(5):  # warm up: the first release clones the mirror
            self.wait_done([self.trigger()], timeout=60)

    def wait_idle(self, timeout: float = 120) -> None:
        """Until the worker has nothing queued and is waiting for work: mail and webhook jobs a
        release left behind (the worker runs them between releases) must not delay the next sample."""
        def idle() -> bool:
            workers = Worker.all(connection=self.redis)
            return (all(queue.count == 0 for queue in Queue.all(connection=self.redis))
                    and bool(workers) and all(worker.get_state() == "idle" for worker in workers))

        wait_until(idle, timeout, "the worker to be idle", interval=0.01, alive=self.worker)

    def trigger(self) -> int:
        body = {"resources": CHANGE, "ref": self.commit, "description": "benchmark release"}
        return self.api.call("POST", "/projects/pipeline/environments/qa/releases", body, expect=202)["id"]

    def wait_done(self, ids: list[int], timeout: float = 120) -> list[dict]:
        # The polls count, and only the last one reads the rows: the observer takes as little
        # CPU as it can from the machine it measures (the baseline's loop has no observer).
        states = ", ".join(f"'{state}'" for state in TERMINAL)
        count = sa.text(f"SELECT count(*) FROM releases WHERE id IN ({', '.join(map(str, ids))}) "
                        f"AND state IN ({states})")
        query = sa.text("SELECT id, state, hook_output, error, finished_at FROM releases "
                        f"WHERE id IN ({', '.join(map(str, ids))})")

        def finished() -> bool:
            with self.app.engine.connect() as conn:
                return conn.execute(count).scalar() == len(ids)

        wait_until(finished, timeout, f"releases {ids[0]}…{ids[-1]} to finish", interval=0.02, alive=self.worker)
        with self.app.engine.connect() as conn:
            done = [dict(row._mapping) for row in conn.execute(query)]
        failed = [row for row in done if row["state"] != "SUCCEEDED"]
        if failed:
            raise SystemExit(f"Release {failed[0]['id']} ended {failed[0]['state']}: {failed[0]['error']}\n"
                             f"worker log:\n{self.worker.tail()}")
        return done

    # -- measurement 1 ----------------------------------------------------------------------------

    def first_line_ours(self) -> float:
        """Seconds from the trigger's 202 to the hook's first line."""
        self.wait_idle()
        release_id = self.trigger()
        accepted = time.monotonic()
        (row,) = self.wait_done([release_id])
        return first_line_time(row["hook_output"]) - accepted

    def first_line_baseline(self) -> float:
        self.wait_idle()
        return self.baseline.first_line()

    # -- measurement 2 ----------------------------------------------------------------------------

    def throughput_ours(self, count: int) -> float:
        """Releases per second: `count` triggered back to back, until the last one SUCCEEDED."""
        self.wait_idle()
        started = datetime.now(UTC).replace(tzinfo=None)  # finished_at is naive UTC
        ids = [self.trigger() for _ in range(count)]
        done = self.wait_done(ids)
        last = max(_as_datetime(row["finished_at"]) for row in done)
        return count / (last - started).total_seconds()

    def throughput_baseline(self, count: int) -> float:
        self.wait_idle()
        started = time.monotonic()
        for _ in range(count):
            self.baseline.run()
        return count / (time.monotonic() - started)


class _Baseline:
    """The same hook, the same interpreter, a checkout and a payload made once: just subprocess.run."""

    def __init__(self, root: Path, repo: Path, commit: str) -> None:
        from .repo import checkout_copy

        checkout_copy(repo, commit, root / "checkout")
        (root / "home").mkdir()
        self.payload = root / "payload.json"
        self.payload.write_text(json.dumps({"environmentName": "qa", "releaseStream": "QA", "resources": CHANGE,
                                            "releaseId": 0, "projectName": "pipeline", "commit": commit}, indent=2))
        self.cwd = root / "checkout"
        self.argv = [hook_python(), str(self.cwd / "pipeline/pre_release_hooks/pre_release_hook.py"),
                     str(self.payload)]
        self.env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(root / "home"),
                    "RELEASE_ID": "0", "PROJECT_NAME": "pipeline", "ENVIRONMENT_NAME": "qa", "RELEASE_STREAM": "QA"}

    def run(self) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"The baseline hook exited {proc.returncode}: {proc.stdout}")
        return proc

    def first_line(self) -> float:
        started = time.monotonic()
        return first_line_time(self.run().stdout) - started


def _as_datetime(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
