"""Figures 1 to 3 on one Releasegate instance with one worker: how soon a hook starts after a
trigger (against a bare `subprocess.run` of the same hook), how soon an approved release's command
starts, and how soon a pending release's mail and webhook arrive at real servers."""
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

from .client import Api, create_webhook
from .receivers import Mailbox, WebhookReceiver
from .repo import COMMAND, command_first_line_time, first_line_time
from .stack import App, Stack, hook_python, wait_until

TERMINAL = ("APPROVED", "REJECTED", "CANCELLED", "SUCCEEDED", "FAILED", "TIMED_OUT")
CHANGE = [{"resourceType": "service", "resourceName": "api", "resourcePath": "services/service-00.json",
           "changeType": "UPDATE_IN_PLACE"}]
PASSWORD = "bench-password-1"
APPROVER = "approver@localhost"
NOTIFY_ENVIRONMENTS = 20


class Pipeline:
    """A Releasegate instance with one worker, mail to a real SMTP server and webhooks to a real
    HTTP server. Projects: `pipeline/qa` (hook exits 0; figure 1), `approve/prod` (hook exits 2,
    a release command; figure 2), `notify/n-01…n-20` (hook exits 2; figure 3)."""

    def __init__(self, stack: Stack, repo: Path, commit: str) -> None:
        self.stack, self.commit = stack, commit
        self.mailbox, self.webhooks = Mailbox(APPROVER), WebhookReceiver()
        self.notify_spans: list[dict] = []
        stack.on_exit(self.mailbox.stop)
        stack.on_exit(self.webhooks.stop)
        self.app: App = stack.app("pipeline", env={"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(self.mailbox.port),
                                                   "WEBHOOK_ALLOW_LOCAL": "1"})
        stack.flask(self.app, "users", "create", "bench", "--email", "bench@localhost", "--password", PASSWORD,
                    "--admin")
        stack.flask(self.app, "users", "create", "approver", "--email", APPROVER, "--password", PASSWORD, "--admin")
        token = stack.flask(self.app, "tokens", "create", "bench")
        self.server = stack.serve_app(self.app)
        self.worker = stack.start_worker(self.app)
        self.api = Api(self.server.url, token)
        self.approver = Api(self.server.url, stack.flask(self.app, "tokens", "create", "approver"))
        for project, environments in (("pipeline", [{"name": "qa", "release_stream": "QA"}]),
                                      ("approve", [{"name": "prod", "release_stream": "PROD",
                                                    "release_command": COMMAND}]),
                                      ("notify", [{"name": f"n-{n:02d}", "release_stream": "PROD"}
                                                  for n in range(1, NOTIFY_ENVIRONMENTS + 1)])):
            self.api.call("POST", "/projects", {"name": project, "repo": str(repo), "branch": "main"}, expect=201)
            for environment in environments:
                self.api.call("POST", f"/projects/{project}/environments", environment, expect=201)
        create_webhook(self.server.url, "bench", PASSWORD, name="bench-receiver", url=self.webhooks.url,
                       events=["release.pending_approval"])
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

    def trigger(self, project: str = "pipeline", environment: str = "qa") -> int:
        body = {"resources": CHANGE, "ref": self.commit, "description": "benchmark release"}
        return self.api.call("POST", f"/projects/{project}/environments/{environment}/releases", body,
                             expect=202)["id"]

    def wait_state(self, ids: list[int], state: str, timeout: float = 120) -> None:
        query = sa.text(f"SELECT count(*) FROM releases WHERE id IN ({', '.join(map(str, ids))}) AND state = :s")

        def there() -> bool:
            with self.app.engine.connect() as conn:
                return conn.execute(query, {"s": state}).scalar() == len(ids)

        wait_until(there, timeout, f"releases {ids[0]}…{ids[-1]} to be {state}", alive=self.worker)

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

    # -- figure 2 ---------------------------------------------------------------------------------

    def approve_first_line(self) -> float:
        """Seconds from sending the approval of a pending `approve/prod` release to the first line of
        its bot release's command."""
        self.wait_idle()
        release_id = self.trigger("approve", "prod")
        self.wait_state([release_id], "PENDING_APPROVAL")
        self.wait_idle()  # its mail and webhook are out: the approval is all the worker has to do
        sent = time.time()
        self.approver.call("POST", f"/releases/{release_id}/approve", {"comment": "bench"})
        query = sa.text("SELECT id, state, exec_output, error FROM releases WHERE parent_release_id = :p")
        states = ", ".join(f"'{state}'" for state in TERMINAL)

        def bot_done() -> dict | None:
            with self.app.engine.connect() as conn:
                row = conn.execute(sa.text(query.text + f" AND state IN ({states})"), {"p": release_id}).first()
            return None if row is None else dict(row._mapping)

        bot = wait_until(bot_done, 60, f"the bot release of #{release_id}", alive=self.worker)
        if bot["state"] != "SUCCEEDED":
            raise SystemExit(f"Bot release {bot['id']} ended {bot['state']}: {bot['error']}\n{self.worker.tail()}")
        return command_first_line_time(bot["exec_output"]) - sent

    # -- figure 3 ---------------------------------------------------------------------------------

    def notify_round(self) -> tuple[list[float], list[float]]:
        """One release in each of the 20 `notify` environments, triggered back to back; for each,
        seconds from going PENDING_APPROVAL to its approval mail's DATA being accepted by the SMTP
        server, and to its webhook being received. Then all are rejected, for the next round."""
        self.wait_idle()
        ids = [self.trigger("notify", f"n-{n:02d}") for n in range(1, NOTIFY_ENVIRONMENTS + 1)]

        def arrived() -> bool:
            with self.mailbox.lock, self.webhooks.lock:
                return all(i in self.mailbox.received and i in self.webhooks.received for i in ids)

        wait_until(arrived, 120, f"mails and webhooks of releases {ids[0]}…{ids[-1]}", interval=0.05,
                   alive=self.worker)
        with self.app.engine.connect() as conn:
            pending = {row.id: _as_datetime(row.pending_since).replace(tzinfo=UTC).timestamp()
                       for row in conn.execute(sa.text("SELECT id, pending_since FROM releases WHERE id IN "
                                                       f"({', '.join(map(str, ids))})"))}
        mail = [self.mailbox.received[i] - pending[i] for i in ids]
        hooks = [self.webhooks.received[i] - pending[i] for i in ids]
        # where the wait is: before the last hook of the round ran, or after
        self.notify_spans.append({"first_to_last_pending_s": max(pending.values()) - min(pending.values()),
                                  "last_pending_to_first_mail_s": min(self.mailbox.received[i] for i in ids)
                                  - max(pending.values()),
                                  "first_to_last_mail_s": max(self.mailbox.received[i] for i in ids)
                                  - min(self.mailbox.received[i] for i in ids)})
        for release_id in ids:
            self.approver.call("POST", f"/releases/{release_id}/reject", {"comment": "bench round over"})
        return mail, hooks


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
