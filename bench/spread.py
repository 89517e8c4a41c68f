"""Figure 4: releases per second through the pipeline with 3 workers on PostgreSQL, 12 environments
and a hook that sleeps 0.2 s, against the same with 1 worker: does work spread across workers and
environments?"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from redis import Redis
from rq import Queue, Worker

from .client import Api
from .pipeline import CHANGE, PASSWORD, TERMINAL, _as_datetime
from .stack import App, Process, Stack, wait_until

ENVIRONMENTS = 12
WORKERS = 3


class Spread:
    def __init__(self, stack: Stack, repo: Path, commit: str) -> None:
        self.stack, self.commit = stack, commit
        self.app: App = stack.app("spread", postgres=True)
        stack.flask(self.app, "users", "create", "bench", "--email", "bench@localhost", "--password", PASSWORD,
                    "--admin")
        self.server = stack.serve_app(self.app)
        self.api = Api(self.server.url, stack.flask(self.app, "tokens", "create", "bench"))
        self.api.call("POST", "/projects", {"name": "spread", "repo": str(repo), "branch": "main"}, expect=201)
        self.environments = [f"s-{n:02d}" for n in range(1, ENVIRONMENTS + 1)]
        for name in self.environments:
            self.api.call("POST", "/projects/spread/environments", {"name": name, "release_stream": "QA"},
                          expect=201)
        self.redis = Redis.from_url(self.app.env["REDIS_URL"])
        self.workers: list[Process] = []
        self.use(WORKERS)
        self.batch(len(self.environments))  # warm up: the mirror, every worker's imports and connections

    def use(self, count: int) -> None:
        """Exactly `count` workers, registered and idle."""
        while len(self.workers) > count:
            self.stack.stop(self.workers.pop())
        while len(self.workers) < count:
            self.workers.append(self.stack.start_worker(self.app, suffix=str(len(self.workers))))

        def ready() -> bool:
            workers = Worker.all(connection=self.redis)
            return (len(workers) == count and all(w.get_state() == "idle" for w in workers)
                    and all(q.count == 0 for q in Queue.all(connection=self.redis)))

        wait_until(ready, 60, f"{count} idle worker(s) on spread", interval=0.05, alive=self.workers[0])

    def batch(self, count: int) -> float:
        """Releases per second: `count` releases round-robin over the environments, triggered back
        to back; from the first trigger to the last `finished_at`."""
        started = datetime.now(UTC).replace(tzinfo=None)
        body = {"resources": CHANGE, "ref": self.commit, "description": "spread"}
        ids = [self.api.call("POST", f"/projects/spread/environments/{self.environments[n % len(self.environments)]}"
                                     "/releases", body, expect=202)["id"] for n in range(count)]
        states = ", ".join(f"'{state}'" for state in TERMINAL)
        where = f"id IN ({', '.join(map(str, ids))})"

        def finished() -> bool:
            with self.app.engine.connect() as conn:
                return conn.execute(sa.text(f"SELECT count(*) FROM releases WHERE {where} AND state IN ({states})")
                                    ).scalar() == len(ids)

        wait_until(finished, 300, f"{count} spread releases", interval=0.05, alive=self.workers[0])
        with self.app.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT id, state, error, finished_at FROM releases WHERE {where}")).all()
        failed = [row for row in rows if row.state != "SUCCEEDED"]
        if failed:
            raise SystemExit(f"Spread release {failed[0].id} ended {failed[0].state}: {failed[0].error}")
        last = max(_as_datetime(row.finished_at) for row in rows)
        return count / (last - started).total_seconds()
