"""Which audited events people and tools hear about, handed to the notifier after commit.

transactions.audit() asks `worth_announcing` and, if so, registers `publish` to run
after the commit; the worker's `announce_event` job then re-reads the audit row and
writes the mails and webhook deliveries (notify.announce).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# Release states that are announced (webhook event names are in notify.EVENT_OF_STATE).
ANNOUNCED_STATES = frozenset({"QUEUED", "PENDING_APPROVAL", "APPROVED", "REJECTED", "SUCCEEDED", "FAILED",
                              "TIMED_OUT", "CANCELLED"})


def worth_announcing(action: str, to_state: str | None, details: dict | None) -> bool:
    details = details if isinstance(details, dict) else {}
    if action == "state":
        return to_state in ANNOUNCED_STATES
    if action == "settings":
        return bool(details.get("weakens_gate"))
    # An approval that met some rules, or a reminder: the ones still counting are told. An
    # emergency release, and its review once overdue: everyone who may approve there is told.
    return action in ("approval", "reminder", "break_glass", "review_overdue")


def publish(audit_event_id: int) -> None:
    """After commit: queue the announcement of a committed audit event (by id only; one
    written inside a savepoint that rolled back never gets here, see transactions.py).

    Never raises: the change is committed, and a lost announcement must not turn it
    into an error for whoever made it.
    """
    try:
        from worker.queues import enqueue_notify_job  # the one worker piece the webapp uses

        enqueue_notify_job("announce", audit_event_id)
    except Exception:
        log.exception("could not announce an audit event")
