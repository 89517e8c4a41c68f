"""The dashboard of figures 5, 6 and 8: 20 environments, each with a release pending approval and
a queue of 5 behind it, over a history of past releases inserted directly with SQL (fill.py).
And figure 7's wide boards: many projects of 10 environments, their releases all written with SQL."""
from __future__ import annotations

import re
import time
from pathlib import Path

import sqlalchemy as sa
from redis import Redis

from . import fill
from .client import Api, get, sign_in
from .load import Target
from .pipeline import CHANGE, PASSWORD
from .stack import App, Stack, wait_until

ENVIRONMENTS = 20
QUEUE = 5
LIVE_VERSION_KEY = "releasegate:version"  # webapp/live.py: what every audited change moves
_VERSION = re.compile(r"/fragments/dashboard\?v=([^\"&]+)")


class Board:
    def __init__(self, stack: Stack, repo: Path, name: str, history: int) -> None:
        self.name, self.history = name, history
        self.app: App = stack.app(name)
        stack.flask(self.app, "users", "create", "admin", "--email", "admin@localhost", "--password", PASSWORD,
                    "--admin")
        # Someone other than the triggerer who may approve: without them the hooks' "approval
        # required" fails the release (no approval rule could ever be met).
        stack.flask(self.app, "users", "create", "reviewer", "--email", "reviewer@localhost", "--password", PASSWORD,
                    "--admin")
        self.server = stack.serve_app(self.app)
        api = Api(self.server.url, stack.flask(self.app, "tokens", "create", "admin"))
        api.call("POST", "/projects", {"name": "board", "repo": str(repo), "branch": "main"}, expect=201)
        for n in range(1, ENVIRONMENTS + 1):
            api.call("POST", "/projects/board/environments",
                     {"name": f"env-{n:02d}", "release_stream": "PROD" if n % 4 == 0 else "QA"}, expect=201)
        self.fill_seconds = fill.past_releases(self.app.engine, history, "board")  # older than the live ones
        for n in range(1, ENVIRONMENTS + 1):
            for _ in range(1 + QUEUE):
                api.call("POST", f"/projects/board/environments/env-{n:02d}/releases",
                         {"resources": CHANGE, "description": "waiting on the dashboard"}, expect=202)
        worker = stack.start_worker(self.app)  # runs the 20 hooks (exit 2), then goes away
        wait_until(lambda: self._count("PENDING_APPROVAL") == ENVIRONMENTS, 120,
                   f"{ENVIRONMENTS} pending releases on {name}", interval=0.2, alive=worker)
        stack.stop(worker)
        if self._count("QUEUED") != ENVIRONMENTS * QUEUE:
            raise SystemExit(f"{name}: expected {ENVIRONMENTS * QUEUE} queued releases.")
        self.cookie = sign_in(self.server.url, "admin", PASSWORD)
        status, body = get(self.server.url, "/fragments/dashboard", self.cookie)
        text = body.decode()
        match = _VERSION.search(text)
        if status != 200 or match is None or text.count('class="environment-tile"') != ENVIRONMENTS:
            raise SystemExit(f"{name}: the dashboard fragment answered {status} without the expected "
                             f"{ENVIRONMENTS} environments.")
        self.version = match.group(1)
        status, _ = get(self.server.url, f"/fragments/dashboard?v={self.version}", self.cookie)
        if status != 204:
            raise SystemExit(f"{name}: a poll with the current version answered {status}, not 204.")

    def render_after_change(self) -> float:
        """Seconds for the fragment's first request after the live version moved."""
        redis = Redis.from_url(self.app.env["REDIS_URL"])
        redis.incr(LIVE_VERSION_KEY)
        started = time.perf_counter()
        status, body = get(self.server.url, "/fragments/dashboard", self.cookie)
        elapsed = time.perf_counter() - started
        match = _VERSION.search(body.decode())
        if status != 200 or match is None:
            raise SystemExit(f"{self.name}: the fragment answered {status} after a change.")
        self.version = match.group(1)  # what a poll now sends
        return elapsed

    def _count(self, state: str) -> int:
        with self.app.engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM releases WHERE state = :s"), {"s": state}).scalar()

    @property
    def fragment(self) -> Target:
        """The full fragment: what a poll renders after something changed."""
        return Target(f"fragment-{self.name}", f"{self.server.url}/fragments/dashboard", 200, self.cookie,
                      self.server)

    @property
    def poll(self) -> Target:
        """A poll that finds nothing changed."""
        return Target(f"poll-{self.name}", f"{self.server.url}/fragments/dashboard?v={self.version}", 204,
                      self.cookie, self.server)


class WideBoard:
    """`projects` × 10 environments, each with a release pending approval, 2 queued behind it and
    `past` finished ones, all written with SQL (no hooks run): the dashboard page of figure 7."""

    PER_PROJECT = 10

    def __init__(self, stack: Stack, repo: Path, projects: int, past: int = 10) -> None:
        self.environments = projects * self.PER_PROJECT
        self.name = f"wide-{self.environments}"
        self.app: App = stack.app(self.name)
        stack.flask(self.app, "users", "create", "admin", "--email", "admin@localhost", "--password", PASSWORD,
                    "--admin")
        self.server = stack.serve_app(self.app)
        api = Api(self.server.url, stack.flask(self.app, "tokens", "create", "admin"))
        for p in range(projects):
            api.call("POST", "/projects", {"name": f"p-{p:02d}", "repo": str(repo), "branch": "main"}, expect=201)
            for e in range(self.PER_PROJECT):
                api.call("POST", f"/projects/p-{p:02d}/environments",
                         {"name": f"env-{e:02d}", "release_stream": "PROD" if e % 4 == 3 else "QA"}, expect=201)
        fill.past_releases(self.app.engine, past * self.environments, days=30)
        fill.live_releases(self.app.engine, pending=1, queued=2)
        self.cookie = sign_in(self.server.url, "admin", PASSWORD)
        status, body = get(self.server.url, "/", self.cookie)
        tiles = body.decode().count('class="environment-tile"')
        if status != 200 or tiles != self.environments:
            raise SystemExit(f"{self.name}: the dashboard answered {status} with {tiles} environments, "
                             f"not {self.environments}.")

    def page_seconds(self) -> float:
        started = time.perf_counter()
        status, _ = get(self.server.url, "/", self.cookie)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise SystemExit(f"{self.name}: the dashboard answered {status}.")
        return elapsed
