"""Emergency releases (issue 14), through the API with real hooks and release commands: an
emergency release skips the hook, the rules and the windows, jumps the queue but never
interrupts a running release, sends a scheduled or pending release back behind it, and is
reviewed afterwards by someone else who may approve.

Time is passed in (releases.dispatch(now=…), reconcile(now)), never slept. Windows and
freezes are in test_windows_and_freezes.py.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import release, state, trigger
from tests.worker.run_path_support import row
from tests.worker.windows_and_break_glass_support import (
    API_PROD,
    PROD,
    QA,
    REASON,
    emergencies,  # noqa: F401 - a fixture, used by name
    emergency,
    environment_id,
    freeze,
    moves,
    patch,
    user_id,
)
from webapp import releases
from webapp.accounts import add_grant
from webapp.extensions import db
from webapp.models import AuditEvent, EmailLink, Environment, Release, User
from webapp.notify import email_links
from webapp.reconcile import reconcile

# -- emergency releases -----------------------------------------------------------------------------

# what a release sent back to the queue by an emergency release no longer has
RESET = ("finished_at", "started_at", "heartbeat_at", "hook_started_at", "hook_exit_code", "pending_since",
         "reminded_at", "approval_rules", "approval_reason", "scheduled_reason", "scheduled_until", "error", "since")


def left_of_its_wait(app, release_id: int) -> list:
    """The columns of RESET a release still has set."""
    with app.app_context():
        sent_back = db.session.get(Release, release_id)
        return [column for column in RESET if getattr(sent_back, column) is not None]


def test_an_emergency_release_jumps_a_pending_one_which_runs_its_hook_again_afterwards(app, api, emergencies,
                                                                                      run_jobs):
    patch(api, API_PROD, approval_rules=[{"name": "two", "group": None, "approvals": 2}])
    pending = trigger(api, "dev", path=PROD)
    run_jobs()
    assert api("approver").post(f"/api/v1/releases/{pending}/approve", json={}).status_code == 200
    with app.app_context():
        email_links.issue(user_id("admin"), pending, "approve")
        db.session.commit()

    with app.app_context():  # what else a wait can gather: a reminder, a verdict's reason, a long hook output
        waiting = db.session.get(Release, pending)
        waiting.reminded_at, waiting.approval_reason, waiting.hook_truncated = waiting.pending_since, "risky", True
        db.session.commit()

    response = emergency(api)
    assert response.status_code == 202, response.json
    urgent = response.json
    assert urgent["state"] == "IN_PROGRESS" and urgent["hook"]["exit_code"] is None  # no hook
    assert urgent["break_glass"]["reason"] == REASON and urgent["break_glass"]["review"] is None
    assert state(api, pending) == "QUEUED"
    assert release(api, pending)["decisions"] == []
    assert left_of_its_wait(app, pending) == []  # its hook, rules and changes are read again
    assert row(app, pending, "hook_output", "hook_truncated") == ("", False)
    [(_, why)] = [move for move in moves(app, pending) if move[0] == "QUEUED"][1:]
    assert why == (f"back to the queue behind emergency release #{urgent['id']} (by oncall); its hook runs again "
                   "when it gets the slot, and the approvals given so far (approver) no longer count")
    with app.app_context():
        link = db.session.scalar(sa.select(EmailLink).where(EmailLink.release_id == pending))
        assert link.revoked_at is not None and "emergency release" in link.revoked_reason

    run_jobs()  # the emergency release applies, then the pending one's hook runs again
    assert state(api, urgent["id"]) == "SUCCEEDED"
    again = release(api, pending)
    assert again["state"] == "PENDING_APPROVAL" and again["approval"]["rules"][0]["approved_by"] == []
    hooks = [reason for to_state, reason in moves(app, pending) if to_state == "READY"]
    assert len(hooks) == 2


def test_a_release_sent_back_names_every_approval_that_no_longer_counts(app, api, emergencies, run_jobs):
    emergencies.add("carol", "approve_release")
    patch(api, API_PROD, approval_rules=[{"name": "three", "group": None, "approvals": 3}])
    pending = trigger(api, "dev", path=PROD)
    run_jobs()
    for who in ("approver", "carol"):
        assert api(who).post(f"/api/v1/releases/{pending}/approve", json={}).status_code == 200
    urgent = emergency(api).json
    [(_, why)] = [move for move in moves(app, pending) if move[0] == "QUEUED"][1:]
    assert why == (f"back to the queue behind emergency release #{urgent['id']} (by oncall); its hook runs again "
                   "when it gets the slot, and the approvals given so far (approver, carol) no longer count")


def test_an_emergency_release_goes_ahead_of_the_queue_but_never_interrupts_a_running_one(app, api, emergencies,
                                                                                        run_jobs):
    patch(api, API_PROD, approval_workflow=False)  # a serial queue: each release applies at once
    running = trigger(api, "dev", path=PROD)
    queued = trigger(api, "dev", path=PROD)
    assert (state(api, running), state(api, queued)) == ("IN_PROGRESS", "QUEUED")
    urgent = emergency(api).json
    assert urgent["state"] == "QUEUED" and state(api, running) == "IN_PROGRESS"
    with app.app_context():
        assert releases.record_execution_result(running, exit_code=0, output="", truncated=False) == "SUCCEEDED"
    assert (state(api, urgent["id"]), state(api, queued)) == ("IN_PROGRESS", "QUEUED")


def test_an_emergency_release_skips_a_freeze_and_sends_a_scheduled_release_back_behind_it(app, api, emergencies,
                                                                                         run_jobs):
    patch(api, API_PROD, approval_workflow=False, freezes=freeze())
    waiting = trigger(api, "dev", path=PROD)
    assert state(api, waiting) == "SCHEDULED"
    urgent = emergency(api).json
    assert urgent["state"] == "IN_PROGRESS"
    assert state(api, waiting) == "QUEUED"
    assert left_of_its_wait(app, waiting) == []  # why it was scheduled is asked again when it gets the slot
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED"
    assert state(api, waiting) == "SCHEDULED"  # the freeze still holds for it


@pytest.mark.parametrize("who, body, status, says", [
    ("dev", {"reason": REASON}, 403, "\u201cEmergency release (break-glass)\u201d permission on shop/prod"),
    ("oncall", {"reason": "it broke"}, 422, "needs a reason of 10 to 2,000 characters"),
    ("oncall", {"reason": "          x         "}, 422, "needs a reason of 10 to 2,000 characters"),
    ("oncall", {"why": REASON}, 400, '"break_glass" must be an object like {"reason"'),
    ("oncall", "now", 400, '"break_glass" must be an object like {"reason"'),
])
def test_an_emergency_release_is_refused_without_the_permission_or_a_reason(app, api, emergencies, who, body,
                                                                           status, says):
    response = api(who).post(f"{API_PROD}/releases", json={"resources": [], "break_glass": body})
    assert response.status_code == status and says in response.json["error"], response.json
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Release.id))) == 0


def test_an_emergency_release_is_refused_where_the_environment_does_not_allow_them(app, api, emergencies):
    with app.app_context():
        qa = db.session.get(Environment, environment_id(app, "qa"))
        emergencies.add("qa_oncall", "trigger_release", "break_glass", environment=qa)
    response = emergency(api, "qa_oncall", path=QA)
    assert response.status_code == 409
    assert response.json["error"].startswith("shop/qa does not allow emergency releases (allow_break_glass is off)")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Release.id))) == 0


def test_turning_emergency_releases_on_is_announced_as_weakening_the_gate(app, api, shop):
    patch(api, API_PROD, allow_break_glass=True)
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "settings")
                                  .order_by(AuditEvent.id.desc()))
        assert event.details["weakens_gate"] == ["allow_break_glass"]
    patch(api, API_PROD, allow_break_glass=False)
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "settings")
                                  .order_by(AuditEvent.id.desc()))
        assert event.details["weakens_gate"] == []


# -- the review afterwards --------------------------------------------------------------------------

def test_an_emergency_release_is_reviewed_once_after_it_finished_by_someone_else_who_may_approve(app, api,
                                                                                               emergencies,
                                                                                               run_jobs):
    urgent = emergency(api).json
    url = f"/api/v1/releases/{urgent['id']}/review"
    answer = api("approver").post(url, json={"comment": "early"})
    assert answer.status_code == 409 and "only a release that is finished can" in answer.json["error"]
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED"

    emergencies.add("lead", "approve_release", "break_glass", "trigger_release")
    answer = api("oncall").post(url, json={"comment": "mine"})
    assert answer.status_code == 403  # oncall may not approve at all
    with app.app_context():
        add_grant(db.session.get(User, user_id("oncall")), "approve_release",
                  db.session.get(Environment, environment_id(app, "prod")))
    answer = api("oncall").post(url, json={"comment": "mine"})
    assert answer.status_code == 403 and "You triggered this emergency release" in answer.json["error"]
    answer = api("approver").post(url, json={"comment": ""})
    assert answer.status_code == 422 and "A review needs a comment" in answer.json["error"]

    answer = api("approver").post(url, json={"comment": "the hotfix was the right call"})
    assert answer.status_code == 200, answer.json
    review = answer.json["break_glass"]["review"]
    assert (review["by"], review["comment"]) == ("approver", "the hotfix was the right call") and review["at"]
    answer = api("lead").post(url, json={"comment": "me too"})
    assert answer.status_code == 409 and "was reviewed already, by approver" in answer.json["error"]

    normal = trigger(api, "dev", path=QA)
    answer = api("approver").post(f"/api/v1/releases/{normal}/review", json={"comment": "x"})
    assert answer.status_code == 409 and "is not an emergency release" in answer.json["error"]


def test_overdue_reviews_are_announced_when_due_and_again_each_day_until_reviewed(app, api, emergencies,
                                                                                run_jobs):
    patch(api, API_PROD, break_glass_review_hours=2)
    urgent = emergency(api).json
    run_jobs()
    with app.app_context():
        row = db.session.get(Release, urgent["id"])
        due = row.review_due_at
        assert abs(due - row.created_at - timedelta(hours=2)) < timedelta(seconds=5)
        assert urgent["break_glass"]["review_due_at"] == f"{due:%Y-%m-%dT%H:%M:%SZ}"
        assert reconcile(due - timedelta(minutes=1))["reviews_overdue"] == []
        assert reconcile(due)["reviews_overdue"] == [urgent["id"]]
        assert reconcile(due + timedelta(hours=12))["reviews_overdue"] == []
        assert reconcile(due + timedelta(days=1))["reviews_overdue"] == [urgent["id"]]
    assert api("approver").post(f"/api/v1/releases/{urgent['id']}/review",
                                json={"comment": "right call"}).status_code == 200
    with app.app_context():
        assert reconcile(due + timedelta(days=3))["reviews_overdue"] == []
        overdue = db.session.scalars(sa.select(AuditEvent.reason).where(AuditEvent.action == "review_overdue")).all()
    assert len(overdue) == 2 and overdue[0].startswith(f"the review of emergency release #{urgent['id']} was due")


# -- what an attacker's reading of the above found (review of issue 14) -----------------------------

def test_a_scheduled_bot_release_is_cancelled_by_an_emergency_release_never_applied_after_it(app, api, emergencies,
                                                                                            run_jobs):
    """Its approval was for what ran before: applying it after the emergency fix could undo it."""
    patch(api, API_PROD, freezes=freeze())
    pending = trigger(api, "dev", path=PROD)
    run_jobs()
    bot = api("approver").post(f"/api/v1/releases/{pending}/approve", json={}).json["bot_release_id"]
    assert state(api, bot) == "SCHEDULED"
    urgent = emergency(api).json
    assert urgent["state"] == "IN_PROGRESS"
    cancelled = release(api, bot)
    assert cancelled["state"] == "CANCELLED"
    why = (f"cancelled: emergency release #{urgent['id']} (by oncall) took the slot, and this bot release's approval "
           "was given for what was deployed before; trigger the release again if it is still wanted")
    assert cancelled["error"] == why and moves(app, bot)[-1] == ("CANCELLED", why)
    patch(api, API_PROD, freezes=[])
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED" and state(api, bot) == "CANCELLED"
    assert release(api, bot)["execution"]["exit_code"] is None


def test_a_release_sent_back_compares_its_changes_again_with_what_the_emergency_release_deployed(app, api,
                                                                                               emergencies,
                                                                                               run_jobs):
    pending = trigger(api, "dev", path=PROD)
    run_jobs()
    assert release(api, pending)["since"]["previous_release_id"] is None  # the first release here
    urgent = emergency(api).json
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED"
    again = release(api, pending)
    assert again["state"] == "PENDING_APPROVAL"
    assert again["since"]["previous_release_id"] == urgent["id"]


def test_an_emergency_release_queued_behind_a_running_hook_takes_the_slot_when_that_hook_asks_for_approval(
        app, api, emergencies, run_jobs):
    holder = trigger(api, "dev", path=PROD)
    assert state(api, holder) == "READY"  # its hook is queued
    urgent = emergency(api).json
    assert urgent["state"] == "QUEUED"  # a hook that runs is never interrupted
    with app.app_context():
        assert releases.record_hook_result(holder, exit_code=2, output="", truncated=False) == "PENDING_APPROVAL"
    assert state(api, urgent["id"]) == "IN_PROGRESS"
    assert state(api, holder) == "QUEUED"


def test_an_overdue_review_is_announced_only_once_the_release_finished(app, api, emergencies, run_jobs):
    patch(api, API_PROD, approval_workflow=False, break_glass_review_hours=1)
    running = trigger(api, "dev", path=PROD)
    urgent = emergency(api).json
    assert (state(api, running), urgent["state"]) == ("IN_PROGRESS", "QUEUED")
    with app.app_context():
        due = db.session.get(Release, urgent["id"]).review_due_at
        assert reconcile(due + timedelta(hours=1))["reviews_overdue"] == []  # it cannot be reviewed yet
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED"
    with app.app_context():
        assert reconcile(due + timedelta(hours=1))["reviews_overdue"] == [urgent["id"]]
