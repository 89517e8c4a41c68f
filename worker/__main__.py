"""`python -m worker`: an RQ worker for release jobs and notifications (mail, webhooks),
plus the periodic reconciler and the sweep that queues due notification retries."""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.worker import DequeueStrategy

from webapp import create_app  # imported once, before any job runs
from webapp.config import ROOT
from webapp.extensions import db, redis_connection
from webapp.notify.mail import resume_due
from webapp.reconcile import reconcile
from webapp.running import account, sandbox
from webapp.running.workspace import check_work_root, sweep_workspaces
from worker import jobs  # noqa: F401  (a broken import stops the worker here, not at its first job
from worker.queues import NOTIFY_QUEUE, RELEASES_QUEUE

log = logging.getLogger("releasegate.worker")
RECONCILER_LOCK = "releasegate:reconciler"


def reconcile_forever(app, period: int, stop: threading.Event, rq_worker: SimpleWorker | None = None) -> None:
    """Every `period` seconds, one worker among all of them repairs lost state; and every worker
    tells RQ it is alive. RQ's SimpleWorker reports only between jobs, and a job without a timeout
    (all of ours) gives its registration 420 s: a longer hook or release command made the worker
    vanish from `rq info` and /metrics for good."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    while not stop.wait(period):
        with app.app_context():
            try:
                if rq_worker is not None and rq_worker.birth_date is not None:
                    rq_worker.heartbeat()
                for directory in sweep_workspaces():  # this host's leftovers of killed workers
                    log.info("removed the workspace of a lost worker: %s", directory)
                if redis_connection().set(RECONCILER_LOCK, me, nx=True, px=int(period * 900)):
                    report = reconcile()
                    if any(report.values()):
                        log.info("reconciler: %s", {k: v for k, v in report.items() if v})
                    resumed = resume_due()  # mail and webhook retries whose time has come
                    if any(resumed.values()):
                        log.info("notifications queued again: %s", {k: v for k, v in resumed.items() if v})
            except Exception:  # keep reconciling: one bad round must not stop the repairs
                log.exception("reconciler round failed")


class ReleaseWorker(SimpleWorker):
    """Every job starts with a fresh database session: no read snapshot or lock outlives its job."""

    def execute_job(self, job, queue):
        try:
            return super().execute_job(job, queue)
        finally:
            db.session.remove()


def work(worker: ReleaseWorker, *, burst: bool = False) -> None:
    """Take jobs from the releases and notify queues in turn: a mail or webhook waits for at most
    one release job, not for every hook queued before it."""
    worker.work(burst=burst, logging_level="INFO", dequeue_strategy=DequeueStrategy.ROUND_ROBIN)


def check_sandbox(config) -> str | None:
    """A sentence when hooks could not run as configured: no sandbox, a HOOK_USER this worker
    cannot become, or the application's own files inside what a sandbox sees."""
    user = None
    if config["HOOK_USER"]:
        try:
            user = account.resolve(config["HOOK_USER"])
        except account.HookUserError as error:
            return str(error)
    try:
        check_work_root()
    except RuntimeError as error:
        return str(error)
    problem = sandbox.check(config["HOOK_SANDBOX"], user)
    if problem or config["HOOK_SANDBOX"] == "none":
        return problem
    url = config["SQLALCHEMY_DATABASE_URI"]
    seen = sandbox.exposed([str(ROOT), config["INSTANCE_DIR"], config["REPO_CACHE_DIR"],
                            url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""])
    if seen:
        return (f"The sandbox would show hooks {', '.join(seen)}, which lie under the system folders it shares "
                f"({', '.join(sandbox.SYSTEM_DIRS)}): install Releasegate and its instance folder elsewhere, "
                "e.g. under /srv.")
    return None


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app()
    if not app.config["REDIS_URL"]:
        print("REDIS_URL is not set: point it at a Redis server (e.g. redis://127.0.0.1:6379/0), "
              "or start everything with `make run`.", file=sys.stderr)
        return 2
    problem = check_sandbox(app.config)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if not urlsplit(app.config["REDIS_URL"]).password:
        log.warning("REDIS_URL has no password: hooks and release commands share the network and could queue "
                    "jobs of their own; give Redis a password (requirepass) and put it in REDIS_URL")
    if app.config["HOOK_SANDBOX"] == "none":
        log.warning("HOOK_SANDBOX=none: hooks and release commands run unsandboxed on this host and can read "
                    "whatever this worker's user can (docs/operations.md)")
    with app.app_context():
        connection = redis_connection()
        try:
            connection.ping()
        except RedisError as error:
            print(f"Cannot reach Redis at {app.config['REDIS_URL']}: {error}. Start Redis or fix REDIS_URL.",
                  file=sys.stderr)
            return 2
        stop = threading.Event()
        worker = ReleaseWorker([RELEASES_QUEUE, NOTIFY_QUEUE], connection=connection, serializer=JSONSerializer)
        threading.Thread(target=reconcile_forever, args=(app, app.config["RECONCILE_SECONDS"], stop, worker),
                         name="reconciler", daemon=True).start()
        # Jobs run in this process's main thread: a run's sandbox dies with it (bwrap's
        # --die-with-parent follows the thread that started it).
        try:
            work(worker)
        finally:
            stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
