"""What an approval, a rejection and a cancellation record (releases.decisions): the decision
row, the audit events and their sentences, the BOT release that takes the slot, and the slot
handed on at once; and when a pending release expires (expires_at)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger
from tests.rules_support import set_rules
from tests.unit.decisions_support import WAITS, as_, events, row, user
from webapp import approval_rules, releases
from webapp.extensions import db
from webapp.models import Decision, Release

CHANGES = [{"resourceType": "service", "resourceName": "api", "resourcePath": "api.json",
            "changeType": "UPDATE_IN_PLACE"}]
BOTH_RULES = [{"name": "sre", "group": "sre", "approvals": 1}, {"name": "dba", "group": "dba", "approvals": 2}]


@pytest.fixture()
def waiting(app, api, people, new_environment, run_jobs):
    """A release dev triggered on svc/env that waits for sre (alice or dan) and two of dba (bob, dan)."""
    new_environment(WAITS)
    for name in ("alice", "bob", "dan"):
        people.add(name, "approve_release")
    set_rules(app, BOTH_RULES, {"sre": ["alice", "dan"], "dba": ["bob", "dan"]})
    release_id = trigger(api, "dev", resources=CHANGES, description="Roll out the new api")
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    return release_id


def the_decisions(release_id: int) -> list[tuple]:
    return [(d.user.username, d.decision, d.comment, d.via, d.rules, d.digest) for d in db.session.scalars(
        sa.select(Decision).where(Decision.release_id == release_id).order_by(Decision.id))]


def moves(release_id: int) -> list[tuple]:
    return [(e.from_state, e.to_state, e.actor.username if e.actor else None, e.via, e.reason)
            for e in events(release_id) if e.to_state is not None][3:]  # after QUEUED, READY, PENDING_APPROVAL


def test_an_approval_that_leaves_rules_unmet_records_what_it_counted_for_and_the_progress(app, waiting):
    with app.app_context():
        digest = approval_rules.digest(row(waiting))
        still = releases.approve(waiting, as_("dan", "slack"))  # in both groups: counts for both
        assert (still.id, still.state) == (waiting, "PENDING_APPROVAL")
    with app.app_context():
        assert the_decisions(waiting) == [("dan", "APPROVE", "", "slack", ["sre", "dba"], digest)]
        [approval] = [(e.actor.username, e.via, e.reason, e.details) for e in events(waiting, "approval")]
        assert approval == ("dan", "slack", "approved as sre, dba", {
            "rules": ["sre", "dba"],
            "progress": "1 of 2 rules met \u2014 sre: approved by dan, dba: waiting (approved by dan; needs 1 "
                        "more of 2 members)"})


def test_the_last_approval_approves_and_its_bot_release_takes_the_slot_with_what_was_approved(
        app, api, waiting, run_jobs):
    queued = trigger(api, "dev")
    with app.app_context():
        releases.approve(waiting, as_("dan"))
        approved = row(waiting)
        digest = approval_rules.digest(approved)
        bot = releases.approve(waiting, as_("bob", "ui"), "dba agrees")
        assert bot.kind == "BOT" and bot.id != waiting
        approved, bot = row(waiting), row(bot.id)
        assert approved.state == "APPROVED" and not approved.holds_slot
        assert approved.since is not None and approved.hook_path and approved.hook_ref_commit
        assert {column: getattr(bot, column) for column in (
            "kind", "project_id", "environment_id", "state", "holds_slot", "ref", "commit", "description", "resources",
            "triggered_by_id", "parent_release_id", "hook_path", "hook_ref_commit", "approval_digest", "since",
            "scheduled_reason", "scheduled_until")} == {
            "kind": "BOT", "project_id": approved.project_id, "environment_id": approved.environment_id,
            "state": "IN_PROGRESS", "holds_slot": True, "ref": approved.commit, "commit": approved.commit,
            "description": "Roll out the new api", "resources": CHANGES, "triggered_by_id": user("bob").id,
            "parent_release_id": waiting, "hook_path": approved.hook_path, "hook_ref_commit": approved.hook_ref_commit,
            "approval_digest": digest, "since": approved.since, "scheduled_reason": None, "scheduled_until": None}
        assert bot.started_at is not None
        assert the_decisions(waiting)[1] == ("bob", "APPROVE", "dba agrees", "ui", ["dba"], digest)
        assert moves(waiting) == [("PENDING_APPROVAL", "APPROVED", "bob", "ui", "dba agrees")]
        assert [(e.action, e.from_state, e.to_state, e.actor.username, e.via, e.reason) for e in events(bot.id)] == [
            ("state", None, "IN_PROGRESS", "bob", "ui", f"bot release for approved release #{waiting}; the hook is "
             "skipped")]
        bot_id = bot.id
    assert state(api, queued) == "QUEUED"  # the slot went to the bot release
    run_jobs()  # its execute job was enqueued
    assert state(api, bot_id) == "SUCCEEDED"


def test_the_approval_without_a_comment_says_approved(app, api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = trigger(api, "dev")
    run_jobs()
    with app.app_context():
        releases.approve(release_id, as_("approver"))
        assert moves(release_id) == [("PENDING_APPROVAL", "APPROVED", "approver", "api", "approved")]
        assert events(release_id, "approval") == []  # the move says it


def test_an_approval_during_a_freeze_schedules_its_bot_release_and_runs_nothing(app, api, new_environment, run_jobs):
    moment = datetime.now(UTC).replace(tzinfo=None)
    start, end = (f"{moment + delta:%Y-%m-%dT%H:%M:%SZ}" for delta in (-timedelta(hours=1), timedelta(days=1)))
    new_environment(WAITS)
    release_id = trigger(api, "dev")
    run_jobs()
    assert api("admin").patch("/api/v1/projects/svc/environments/env", json={
        "freezes": [{"from": start, "to": end, "reason": "year-end freeze"}]}).status_code == 200
    waits = f"frozen until {end} \u2014 year-end freeze"
    with app.app_context():
        bot = releases.approve(release_id, as_("approver"), "after the freeze")
        assert (bot.kind, bot.state, bot.holds_slot, bot.scheduled_reason) == ("BOT", "SCHEDULED", True, waits)
        assert f"{bot.scheduled_until:%Y-%m-%dT%H:%M:%SZ}" == end
        assert [(e.action, e.to_state, e.reason) for e in events(bot.id)] == [
            ("state", "SCHEDULED", f"bot release for approved release #{release_id}; the hook is skipped; {waits}")]
        bot_id = bot.id
    run_jobs()  # nothing was enqueued for it
    assert state(api, bot_id) == "SCHEDULED"


def test_a_rejection_records_the_decision_and_hands_the_slot_on_at_once(app, api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = trigger(api, "dev")
    run_jobs()
    queued = trigger(api, "dev")
    with app.app_context():
        digest = approval_rules.digest(row(release_id))
        rejected = releases.reject(release_id, as_("approver", "ui"), "not today")
        assert (rejected.id, rejected.state) == (release_id, "REJECTED")
        assert the_decisions(release_id) == [("approver", "REJECT", "not today", "ui", [], digest)]
        assert moves(release_id) == [("PENDING_APPROVAL", "REJECTED", "approver", "ui", "not today")]
    assert state(api, queued) == "READY"  # before any job ran


def test_a_rejection_without_a_comment_says_rejected(app, api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = trigger(api, "dev")
    run_jobs()
    with app.app_context():
        releases.reject(release_id, as_("admin"))
        assert moves(release_id) == [("PENDING_APPROVAL", "REJECTED", "admin", "api", "rejected")]
        assert the_decisions(release_id)[0][:3] == ("admin", "REJECT", "")


@pytest.mark.parametrize("first_state", ["PENDING_APPROVAL", "QUEUED"])
def test_a_cancellation_hands_the_slot_on_at_once(app, api, new_environment, run_jobs, first_state):
    new_environment(WAITS)
    holder = trigger(api, "dev")
    if first_state == "PENDING_APPROVAL":
        run_jobs()
    else:  # hold the slot with a release whose hook waits to run: the one cancelled is queued
        holder = trigger(api, "dev")
    queued = trigger(api, "dev")
    with app.app_context():
        cancelled = releases.cancel(holder, as_("dev"))
        assert (cancelled.id, cancelled.state) == (holder, "CANCELLED")
    expected = "READY" if first_state == "PENDING_APPROVAL" else "QUEUED"
    assert state(api, queued) == expected


def test_a_pending_release_expires_its_timeout_after_it_began_waiting_and_never_without_one():
    began = datetime(2026, 12, 7, 9, 30)
    assert releases.expires_at(began, 2) == datetime(2026, 12, 7, 11, 30)
    assert releases.expires_at(began, 0.5) == datetime(2026, 12, 7, 10, 0)
    assert releases.expires_at(began, None) is None
    assert releases.expires_at(began, 0) is None
    assert releases.expires_at(None, 2) is None


def test_the_bot_release_is_returned_only_when_the_last_rule_is_met(app, waiting):
    with app.app_context():
        assert releases.approve(waiting, as_("alice")).id == waiting
        assert releases.approve(waiting, as_("bob")).id == waiting
        bot = releases.approve(waiting, as_("dan"))
        assert bot.id != waiting and bot.id == db.session.scalar(
            sa.select(Release.id).where(Release.parent_release_id == waiting))
