"""RQ jobs: imperative verbs taking release ids. They re-read the release and do
nothing unless it is in the state they expect."""
from __future__ import annotations

import logging
import time

from webapp import notify, runner, webhooks
from webapp.extensions import db
from worker import queues

log = logging.getLogger(__name__)
# How long a job may go on with the release jobs it queued itself (below), so that RQ's
# bookkeeping (heartbeats, a requested shutdown) is not held up for long.
CHAIN_SECONDS = 10.0


def run_pre_release_hook(release_id: int) -> None:
    _run_and_follow("hook", release_id)


def execute_release(release_id: int) -> None:
    _run_and_follow("execute", release_id)


def _run(kind: str, release_id: int) -> None:
    (runner.run_pre_release_hook if kind == "hook" else runner.execute_release)(release_id)


def _run_and_follow(kind: str, release_id: int) -> None:
    """Run a release job, then the release job it queued itself (the next release of a serial
    queue, its own apply), while no other worker has taken it and nothing else waits: it is
    taken back out of Redis and run at once, without RQ's round trips between two jobs. Its
    run is claimed like any other, so a job of it that some worker still took does nothing."""
    until = time.monotonic() + CHAIN_SECONDS
    queues.forget_queued()
    _run(kind, release_id)
    while time.monotonic() < until and (taken := queues.take_back_queued()) is not None:
        db.session.remove()  # a fresh session for each run, as for each job
        try:
            _run(*taken)
        except Exception:  # as a failed job would: the reconciler repairs what it left behind
            log.exception("release job %s-%s failed", *taken)
            return


def announce_event(audit_event_id: int) -> None:
    notify.announce(audit_event_id)


def send_mail(mail_id: int) -> None:
    notify.send_mail(mail_id)


def deliver_webhook(delivery_id: int) -> None:
    webhooks.deliver(delivery_id)
