"""The release state machine: every rule about how a release moves lives in this package.

Each public function is one transaction: compare-and-set on the release's state, an audit
event beside it, and jobs enqueued only after the commit. None needs a request, so views,
jobs, the CLI and tests all call the same code. Read it in this order:

    states.py     TRANSITIONS (SPEC §3 as data), the one checked move, the errors
    queue.py      trigger (emergency releases too) and dispatch, change windows included
    runs.py       what the worker reports: claims, heartbeats, hook and command outcomes; abort, finish
    decisions.py  approve, reject, cancel; reminders; the review an emergency release owes
"""
from ..transactions import SYSTEM, WORKER, Actor
from .decisions import announce_overdue_review, approve, cancel, expires_at, reject, remind, review
from .queue import dispatch, dispatch_queue, trigger
from .runs import (
    abort,
    await_external_finish,
    claim_run,
    fail,
    finish,
    heartbeat,
    record_execution_result,
    record_hook_result,
    succeed_without_command,
)
from .states import TRANSITIONS, NotFound, ReleaseError, WrongState, get_release

__all__ = [
    "SYSTEM", "WORKER", "Actor", "TRANSITIONS", "ReleaseError", "NotFound", "WrongState",
    "get_release", "trigger", "dispatch", "dispatch_queue", "claim_run", "heartbeat", "fail",
    "record_hook_result", "record_execution_result", "succeed_without_command", "abort", "finish",
    "await_external_finish", "approve", "reject", "cancel", "expires_at", "remind", "review",
    "announce_overdue_review",
]
