"""The states a release moves through (SPEC §3 as the TRANSITIONS table), the one checked
move every action makes, and the errors an action that cannot happen raises."""
from __future__ import annotations

import re
from typing import Any

from .. import transactions
from ..extensions import db
from ..models import Release
from ..transactions import (
    Actor,
    after_commit,
)

# SPEC §3's diagram as a table: state → the states it may move to → the actions that make each
# move. move() refuses anything else before it sends any SQL, and tests/unit/test_transitions.py
# holds this table to the diagram (the README's, which draws SPEC §3's), both ways. Terminal
# states move nowhere.
TRANSITIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "QUEUED": {
        "READY": ("dispatch",),        # took the slot, approval workflow on: the hook decides
        "IN_PROGRESS": ("dispatch",),  # approval workflow off, parallel releases, an emergency release
        "SCHEDULED": ("dispatch",),    # as IN_PROGRESS, but outside every change window or in a freeze
        "CANCELLED": ("cancel",),
    },
    "READY": {
        "IN_PROGRESS": ("hook result",),       # exit 0
        "SCHEDULED": ("hook result",),         # exit 0, outside every change window or in a freeze
        "PENDING_APPROVAL": ("hook result",),  # exit 2, or 0 from a hook unlike the hook ref's
        "FAILED": ("hook result", "abort", "fail"),  # fail: worker lost, or no run could start
    },
    "PENDING_APPROVAL": {
        "APPROVED": ("approve",),       # its BOT release takes the slot in the same transaction
        "REJECTED": ("reject", "fail"),  # fail: the approval timeout expired
        "CANCELLED": ("cancel",),       # withdrawn by its triggerer
        "QUEUED": ("break glass",),     # an emergency release took the slot; its hook runs again later
    },
    "SCHEDULED": {
        "IN_PROGRESS": ("window opened",),  # a window opened, a freeze ended, or the settings changed
        "FAILED": ("abort",),
        "QUEUED": ("break glass",),         # an emergency release took the slot; it waits behind it
        "CANCELLED": ("break glass",),      # a BOT release: its approval was for what ran before
    },
    "IN_PROGRESS": {
        "SCHEDULED": ("window closed",),  # its apply had not started when the window closed
        "SUCCEEDED": ("execution result", "nothing to run", "finish"),
        "FAILED": ("execution result", "abort", "finish", "fail"),
        "TIMED_OUT": ("execution result", "fail"),  # fail: no external finish in time
    },
}

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


class ReleaseError(Exception):
    """An action that cannot happen; the message is shown to the user as it is."""

    status = 409


class NotFound(ReleaseError):
    status = 404


class WrongState(ReleaseError):
    status = 409


def enqueue(kind: str, release_id: int) -> None:
    from worker.queues import enqueue_release_job  # the one worker piece the webapp uses

    after_commit(enqueue_release_job, kind, release_id, first=True)


# -- one move -------------------------------------------------------------------------------

class Unacceptable(ReleaseError):
    status = 422


def get_release(release_id: int) -> Release:
    release = db.session.get(Release, release_id)
    if release is None:
        raise NotFound(f"Release #{release_id} does not exist.")
    return release


def move(release: Release, to_state: str, actor: Actor, action: str, *, expect: tuple[str, ...],
          **options: Any) -> bool:
    """transactions.move(), once TRANSITIONS allows `action` to move `release` from each of the
    `expect` states to `to_state`; a move the table lacks raises, before any SQL."""
    for from_state in expect:
        if action not in TRANSITIONS.get(from_state, {}).get(to_state, ()):
            raise ValueError(f"{from_state} → {to_state} by {action!r} is not a move of SPEC §3 (TRANSITIONS)")
    return transactions.move(release, to_state, actor, expect=expect, **options)


def wrong_state(release: Release, doing: str, needs: str) -> WrongState:
    return WrongState(f"Release #{release.id} is {release.state.replace('_', ' ').lower()}, so it cannot be "
                      f"{doing} (only a release that is {needs} can); nothing was changed.")
