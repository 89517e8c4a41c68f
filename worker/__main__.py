"""`python -m worker`: an RQ worker for release jobs plus the periodic reconciler."""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading

from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from webapp import create_app  # imported once, before any job runs
from webapp.extensions import redis_connection
from webapp.reconcile import reconcile
from webapp.runner import sweep_workspaces
from worker.queues import RELEASES_QUEUE

log = logging.getLogger("releasegate.worker")
RECONCILER_LOCK = "releasegate:reconciler"


def reconcile_forever(app, period: int, stop: threading.Event) -> None:
    """Every `period` seconds, one worker among all of them repairs lost state."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    while not stop.wait(period):
        for directory in sweep_workspaces():  # this host's leftovers of killed workers
            log.info("removed the workspace of a lost worker: %s", directory)
        with app.app_context():
            try:
                if redis_connection().set(RECONCILER_LOCK, me, nx=True, px=int(period * 900)):
                    report = reconcile()
                    if any(report.values()):
                        log.info("reconciler: %s", {k: v for k, v in report.items() if v})
            except Exception:  # keep reconciling: one bad round must not stop the repairs
                log.exception("reconciler round failed")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app()
    if not app.config["REDIS_URL"]:
        print("REDIS_URL is not set: point it at a Redis server (e.g. redis://127.0.0.1:6379/0), "
              "or start everything with `make run`.", file=sys.stderr)
        return 2
    with app.app_context():
        connection = redis_connection()
        try:
            connection.ping()
        except RedisError as error:
            print(f"Cannot reach Redis at {app.config['REDIS_URL']}: {error}. Start Redis or fix REDIS_URL.",
                  file=sys.stderr)
            return 2
        stop = threading.Event()
        threading.Thread(target=reconcile_forever, args=(app, app.config["RECONCILE_SECONDS"], stop),
                         name="reconciler", daemon=True).start()
        # Jobs run in this process's main thread: hook supervisors die with it (PDEATHSIG),
        # and nothing is imported or forked per job.
        worker = SimpleWorker([RELEASES_QUEUE], connection=connection, serializer=JSONSerializer)
        try:
            worker.work(logging_level="INFO")
        finally:
            stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
