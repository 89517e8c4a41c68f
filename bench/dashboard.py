"""The dashboard of measurements 3 to 5: 20 environments, each with a release pending approval
and a queue of 5 behind it, over a history of past releases inserted directly with SQL."""
from __future__ import annotations

import random
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from redis import Redis

from .client import Api, get, sign_in
from .load import Target
from .pipeline import CHANGE, PASSWORD
from .stack import App, Stack, wait_until

ENVIRONMENTS = 20
QUEUE = 5
PAST_STATES = ["SUCCEEDED"] * 16 + ["FAILED", "FAILED", "REJECTED", "CANCELLED"]
LIVE_VERSION_KEY = "releasegate:version"  # webapp/live.py: what every audited change moves
_VERSION = re.compile(r"/fragments/dashboard\?v=([^\"&]+)")


class Board:
    def __init__(self, stack: Stack, repo: Path, name: str, history: int) -> None:
        self.name, self.history = name, history
        self.app: App = stack.app(name)
        stack.flask(self.app, "users", "create", "admin", "--email", "admin@localhost", "--password", PASSWORD,
                    "--admin")
        self.server = stack.serve_app(self.app)
        api = Api(self.server.url, stack.flask(self.app, "tokens", "create", "admin"))
        api.call("POST", "/projects", {"name": "board", "repo": str(repo), "branch": "main"}, expect=201)
        for n in range(1, ENVIRONMENTS + 1):
            api.call("POST", "/projects/board/environments",
                     {"name": f"env-{n:02d}", "release_stream": "PROD" if n % 4 == 0 else "QA"}, expect=201)
        insert_history(self.app.engine, history)  # older than the live releases, as history is
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


def insert_history(engine: sa.Engine, count: int, seed: int = 6) -> None:
    """`count` finished releases of the board's environments over the past year, with their audit
    events, inserted with executemany (tables reflected, so SQLite and PostgreSQL both work)."""
    rng = random.Random(seed)
    meta = sa.MetaData()
    releases = sa.Table("releases", meta, autoload_with=engine)
    events = sa.Table("audit_events", meta, autoload_with=engine)
    with engine.begin() as conn:
        project_id = conn.execute(sa.text("SELECT id FROM projects WHERE name = 'board'")).scalar_one()
        environment_ids = list(conn.execute(sa.text("SELECT id FROM environments WHERE project_id = :p"),
                                            {"p": project_id}).scalars())
        user_id = conn.execute(sa.text("SELECT id FROM users ORDER BY id")).scalars().first()
        next_id = (conn.execute(sa.text("SELECT max(id) FROM releases")).scalar() or 0) + 1
        start = datetime.now().replace(microsecond=0) - timedelta(days=365)
        step = timedelta(days=365) / max(count, 1) * 0.99
        for chunk in range(0, count, 10_000):
            release_rows, event_rows = [], []
            for n in range(chunk, min(count, chunk + 10_000)):
                created = start + step * n
                state = rng.choice(PAST_STATES)
                release_rows.append(_past_release(next_id + n, project_id, rng.choice(environment_ids), user_id,
                                                  state, created))
                event_rows.extend(_past_events(release_rows[-1], user_id))
            conn.execute(releases.insert(), release_rows)
            conn.execute(events.insert(), event_rows)
        if engine.dialect.name == "postgresql":  # ids were given: move the sequence past them
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('releases', 'id'), max(id)) FROM releases"))


def _past_release(release_id: int, project_id: int, environment_id: int, user_id: int, state: str,
                  created: datetime) -> dict:
    commit = f"{release_id:040x}"
    hook_exit = {"SUCCEEDED": 0, "FAILED": 1, "REJECTED": 2, "CANCELLED": None}[state]
    return {
        "id": release_id, "kind": "RELEASE", "project_id": project_id, "environment_id": environment_id,
        "state": state, "holds_slot": False, "ref": "main", "commit": commit,
        "description": f"deploy build {release_id}", "resources": CHANGE, "triggered_by_id": user_id,
        "hook_path": "board/pre_release_hooks/pre_release_hook.py", "hook_ref_commit": commit,
        "hook_exit_code": hook_exit, "hook_output": "" if hook_exit is None else
        f"1 change(s) to qa\nhook exited {hook_exit}\n", "hook_truncated": False,
        "exec_output": "deployed\n" if state == "SUCCEEDED" else "", "exec_truncated": False,
        "error": "The pre-release hook exited 1." if state == "FAILED" else None,
        "created_at": created, "started_at": created + timedelta(seconds=1),
        "finished_at": created + timedelta(seconds=40),
    }


def _past_events(release: dict, user_id: int) -> list[dict]:
    path = {"SUCCEEDED": ["QUEUED", "READY", "IN_PROGRESS", "SUCCEEDED"], "FAILED": ["QUEUED", "READY", "FAILED"],
            "REJECTED": ["QUEUED", "READY", "PENDING_APPROVAL", "REJECTED"],
            "CANCELLED": ["QUEUED", "CANCELLED"]}[release["state"]]
    rows, before = [], None
    for n, state in enumerate(path):
        rows.append({"release_id": release["id"], "environment_id": release["environment_id"],
                     "actor_id": user_id if n == 0 else None, "action": "state", "from_state": before,
                     "to_state": state, "reason": "history", "via": "api" if n == 0 else "worker",
                     "details": None, "created_at": release["created_at"] + timedelta(seconds=10 * n)})
        before = state
    return rows
