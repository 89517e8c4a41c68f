"""Where an emergency release puts the release it sends back: right behind itself, ahead of the
releases that were already queued (issue 14, "goes back to QUEUED right behind it")."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger
from tests.worker.windows_and_break_glass_support import (
    API_PROD,
    PROD,
    closed_now,
    emergencies,  # noqa: F401 - a fixture, used by name
    emergency,
    moves,
    patch,
)
from webapp import releases
from webapp.extensions import db
from webapp.models import User


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


@pytest.mark.parametrize("exit_code, waits", [(2, "PENDING_APPROVAL"), (0, "SCHEDULED")])
def test_an_emergency_queued_behind_a_running_hook_takes_the_slot_once_the_hook_leaves_it_waiting(
        app, api, emergencies, exit_code, waits):
    """An emergency release triggered while a hook runs waits (a running hook is never interrupted);
    when the hook's result leaves that release waiting, for approval or for a window, the emergency
    release takes the slot there and then, and the waiting release goes back behind it."""
    windows, _ = closed_now()
    patch(api, API_PROD, change_windows=windows)  # an exit 0 waits for the window
    holder = trigger(api, "dev", path=PROD)  # READY: its hook runs (its job waits in Redis)
    urgent = emergency(api).json
    assert (state(api, holder), urgent["state"]) == ("READY", "QUEUED")
    with app.app_context():
        assert releases.record_hook_result(holder, exit_code=exit_code, output="", truncated=False) == waits
    assert (state(api, urgent["id"]), state(api, holder)) == ("IN_PROGRESS", "QUEUED")
    assert [to for to, _ in moves(app, holder)] == ["QUEUED", "READY", waits, "QUEUED"]


def deleted(app, username: str) -> None:
    """Gone from the database (the app only deactivates people; this is someone's own SQL)."""
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.username == username))
        db.session.commit()


def test_a_deleted_approver_is_named_someone_when_the_approvals_stop_counting(app, api, emergencies, run_jobs):
    patch(api, API_PROD, approval_rules=[{"name": "two", "group": None, "approvals": 2}])
    pending = trigger(api, "dev", path=PROD)
    run_jobs()
    assert api("approver").post(f"/api/v1/releases/{pending}/approve", json={}).status_code == 200
    deleted(app, "approver")
    urgent = emergency(api).json
    assert moves(app, pending)[-1] == ("QUEUED", f"back to the queue behind emergency release #{urgent['id']} (by "
                                       "oncall); its hook runs again when it gets the slot, and the approvals given "
                                       "so far (someone) no longer count")


def test_an_emergency_release_whose_triggerer_was_deleted_still_makes_way_naming_someone(app, api, emergencies):
    holder = trigger(api, "dev", path=PROD)  # READY: its hook runs
    urgent = emergency(api).json  # queued behind the running hook
    deleted(app, "oncall")
    with app.app_context():
        assert releases.record_hook_result(holder, exit_code=2, output="", truncated=False) == "PENDING_APPROVAL"
    assert state(api, urgent["id"]) == "IN_PROGRESS"
    assert moves(app, holder)[-1] == ("QUEUED", f"back to the queue behind emergency release #{urgent['id']} (by "
                                      "someone); its hook runs again when it gets the slot")
