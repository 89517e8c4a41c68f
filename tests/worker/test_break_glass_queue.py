"""Where an emergency release puts the release it sends back: right behind itself, ahead of the
releases that were already queued (issue 14, "goes back to QUEUED right behind it")."""
from __future__ import annotations

from tests.helpers import state, trigger
from tests.worker.windows_and_break_glass_support import (
    PROD,
    emergencies,  # noqa: F401 - a fixture, used by name
    emergency,
    moves,
)


def test_a_pending_release_sent_back_by_an_emergency_runs_before_the_one_queued_behind_it(app, api, emergencies,
                                                                                          run_jobs):
    pending = trigger(api, "dev", path=PROD)
    run_jobs()
    assert state(api, pending) == "PENDING_APPROVAL"
    queued = trigger(api, "dev", path=PROD)
    assert state(api, queued) == "QUEUED"

    urgent = emergency(api).json
    assert urgent["state"] == "IN_PROGRESS"
    assert (state(api, pending), state(api, queued)) == ("QUEUED", "QUEUED")
    run_jobs()  # the emergency release applies; the slot goes to the sent-back release, not the older queued one
    assert state(api, urgent["id"]) == "SUCCEEDED"
    assert state(api, pending) == "PENDING_APPROVAL"  # its hook ran again, and it holds the slot
    assert state(api, queued) == "QUEUED" and [to for to, _ in moves(app, queued)] == ["QUEUED"]

    approved = api("approver").post(f"/api/v1/releases/{pending}/approve", json={}).json
    assert approved["state"] == "APPROVED"
    run_jobs()
    assert state(api, approved["bot_release_id"]) == "SUCCEEDED"
    assert state(api, queued) == "PENDING_APPROVAL"  # only now its hook ran
