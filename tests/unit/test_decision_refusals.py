"""Who may approve, reject, cancel, withdraw or review, as releases.decisions itself decides it
(the views ask first, but every door ends here), and the whole sentence each refusal says.
A refusal changes nothing."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger
from tests.rules_support import TWO_RULES, set_rules, two_rules
from tests.unit.decisions_support import (
    WAITS,
    as_,
    events,
    finished_emergency,  # noqa: F401 - a fixture, used by name
    row,
    user,
    waiting,  # noqa: F401 - a fixture, used by name
)
from webapp import releases
from webapp.extensions import db
from webapp.models import Decision, Release
from webapp.permissions import PermissionDenied
from webapp.releases.states import Unacceptable

NO_APPROVAL_GRANT = ("You need the \u201cRelease Approval/Reject\u201d permission on svc/env to do this; "
                     "ask an admin for a grant.")


def decisions(release_id: int) -> list[tuple[str, str]]:
    return [(d.user.username, d.decision) for d in db.session.scalars(
        sa.select(Decision).where(Decision.release_id == release_id).order_by(Decision.id))]


# -- approve and reject ------------------------------------------------------------------------------

@pytest.mark.parametrize("decide", [releases.approve, releases.reject])
def test_someone_without_the_approval_grant_may_neither_approve_nor_reject(app, waiting, decide):
    with app.app_context():
        with pytest.raises(PermissionDenied) as refused:
            decide(waiting, as_("member"), "let me")
        assert str(refused.value) == NO_APPROVAL_GRANT
        assert row(waiting).state == "PENDING_APPROVAL" and decisions(waiting) == []


@pytest.mark.parametrize("decide", [releases.approve, releases.reject])
def test_the_triggerer_neither_approves_nor_rejects_their_own_release_without_self_approval(
        app, api, new_environment, run_jobs, decide):
    new_environment(WAITS)
    release_id = trigger(api, "approver")
    run_jobs()
    with app.app_context():
        with pytest.raises(PermissionDenied) as refused:
            decide(release_id, as_("approver"), "mine")
        assert str(refused.value) == ("You triggered this release, so someone else must approve or reject it "
                                      "(withdraw it if it should not go ahead).")
        assert row(release_id).state == "PENDING_APPROVAL" and decisions(release_id) == []


@pytest.mark.parametrize(("decide", "doing"), [(releases.approve, "approved"), (releases.reject, "rejected")])
def test_a_release_that_no_longer_waits_is_neither_approved_nor_rejected(app, api, new_environment, run_jobs,
                                                                        decide, doing):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    release_id = trigger(api, "dev")
    run_jobs()
    assert state(api, release_id) == "SUCCEEDED"
    with app.app_context():
        with pytest.raises(releases.WrongState) as refused:
            decide(release_id, as_("approver"))
        assert str(refused.value) == (f"Release #{release_id} is succeeded, so it cannot be {doing} (only a release "
                                      "that is pending approval can); nothing was changed.")
        assert decisions(release_id) == []


@pytest.mark.parametrize(("decide", "doing"), [(releases.approve, "approved"), (releases.reject, "rejected")])
def test_the_move_of_a_decision_accepts_only_the_pending_release_it_judged(app, waiting, monkeypatch, decide,
                                                                          doing):
    """A release that stops waiting after the rules were judged (made to happen in the deciding
    transaction itself, right after the judgement) is neither approved nor rejected: the move is
    a compare-and-set from PENDING_APPROVAL. Rolled back with the decision, the change is gone
    again when the sentence reads the release, which is pending approval again."""
    judge = releases.decisions._pending_progress

    def judged_then_changed_underneath(release, doing):
        progress = judge(release, doing)
        db.session.execute(sa.update(Release.__table__).where(Release.__table__.c.id == release.id)
                           .values(state="READY"))
        return progress

    monkeypatch.setattr(releases.decisions, "_pending_progress", judged_then_changed_underneath)
    with app.app_context():
        with pytest.raises(releases.WrongState) as refused:
            decide(waiting, as_("approver"), "now")
        assert str(refused.value) == (f"Release #{waiting} is pending approval, so it cannot be {doing} (only a "
                                      "release that is pending approval can); nothing was changed.")
        monkeypatch.undo()
        assert row(waiting).state == "PENDING_APPROVAL" and decisions(waiting) == []
        assert db.session.scalar(sa.select(sa.func.count(Release.id)).where(Release.kind == "BOT")) == 0


def test_an_approval_that_would_count_for_no_rule_is_refused_with_the_reason(app, api, new_environment, run_jobs):
    new_environment(WAITS)
    set_rules(app, [{"name": "two", "group": None, "approvals": 2}])
    waiting = trigger(api, "dev")
    run_jobs()
    with app.app_context():
        assert releases.approve(waiting, as_("approver"), "first").state == "PENDING_APPROVAL"
        with pytest.raises(releases.WrongState) as refused:
            releases.approve(waiting, as_("approver"), "again")
        assert str(refused.value) == "You approved this release already; the rules still unmet need other people."
        assert decisions(waiting) == [("approver", "APPROVE")]
        assert [e.reason for e in events(waiting, "approval")] == ["first"]


def test_only_someone_who_could_count_for_a_rule_may_reject(app, api, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    release_id = trigger(api, "dev")
    run_jobs()
    with app.app_context():
        with pytest.raises(PermissionDenied) as refused:
            releases.reject(release_id, as_("approver"), "no")  # may decide, but in neither group
        assert str(refused.value) == ("Only someone who could approve for one of its rules may reject this release "
                                      "(members of dba, sre).")
        assert row(release_id).state == "PENDING_APPROVAL" and decisions(release_id) == []
        assert releases.reject(release_id, as_("carol"), "no").state == "REJECTED"  # dba's


def test_once_a_rules_group_cannot_meet_it_anyone_who_may_decide_may_reject(app, api, people, new_environment,
                                                                           run_jobs):
    new_environment(WAITS)
    people.add("alice", "approve_release")
    set_rules(app, [TWO_RULES[0]], {"sre": ["alice"]})
    release_id = trigger(api, "dev")
    run_jobs()
    with app.app_context():
        from webapp.models import Group

        db.session.scalar(sa.select(Group).where(Group.name == "sre")).members = []
        db.session.commit()
        assert releases.reject(release_id, as_("approver"), "nobody can approve it").state == "REJECTED"


# -- cancel and withdraw -----------------------------------------------------------------------------

def test_a_pending_release_is_withdrawn_only_by_its_triggerer_whatever_their_grants(app, waiting):
    with app.app_context():
        with pytest.raises(PermissionDenied) as refused:
            releases.cancel(waiting, as_("admin"))
        assert str(refused.value) == ("Only the person who triggered a pending release can withdraw it; "
                                      "reviewers reject it instead.")
        assert row(waiting).state == "PENDING_APPROVAL"
        assert releases.cancel(waiting, as_("dev")).state == "CANCELLED"
        [withdrawn] = [e for e in events(waiting) if e.to_state == "CANCELLED"]
        assert (withdrawn.from_state, withdrawn.reason, withdrawn.via) == (
            "PENDING_APPROVAL", "withdrawn by dev", "api")


def test_a_queued_release_is_cancelled_by_its_triggerer_or_by_someone_with_the_cancel_grant(app, api, waiting):
    mine, theirs = trigger(api, "approver"), trigger(api, "approver")  # approver may not cancel others'
    with app.app_context():
        with pytest.raises(PermissionDenied) as refused:
            releases.cancel(theirs, as_("member"))
        assert str(refused.value) == ("You need the \u201cCancel release\u201d permission on svc/env to do this; "
                                      "ask an admin for a grant.")
        assert row(theirs).state == "QUEUED"
        assert releases.cancel(mine, as_("approver", "ui")).state == "CANCELLED"
        assert releases.cancel(theirs, as_("dev")).state == "CANCELLED"
        reasons = {release_id: [(e.from_state, e.reason, e.via) for e in events(release_id)
                                if e.to_state == "CANCELLED"] for release_id in (mine, theirs)}
        assert reasons == {mine: [("QUEUED", "cancelled by approver", "ui")],
                           theirs: [("QUEUED", "cancelled by dev", "api")]}


def test_a_release_neither_queued_nor_pending_cannot_be_cancelled(app, api, new_environment, run_jobs):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    release_id = trigger(api, "dev")
    with app.app_context():
        with pytest.raises(releases.WrongState) as refused:
            releases.cancel(release_id, as_("dev"))  # READY: its hook is about to run
        assert str(refused.value) == (f"Release #{release_id} is ready, so it cannot be cancelled (only a release "
                                      "that is queued or pending approval can); nothing was changed.")
        assert row(release_id).state == "READY"


def test_a_cancel_that_finds_the_release_changed_says_what_it_is_now(app, api, waiting, monkeypatch):
    """The compare-and-set accepts only the state the rules were judged on (the release is
    changed in the cancelling transaction itself, after it was read, deterministically): judged
    queued, it is not withdrawn by someone who may only cancel queued releases."""
    queued = trigger(api, "approver")
    read_release = releases.decisions.get_release

    def read_then_changed_underneath(release_id: int) -> Release:
        found = read_release(release_id)
        db.session.execute(sa.update(Release.__table__).where(Release.__table__.c.id == release_id)
                           .values(state="PENDING_APPROVAL"))
        return found

    monkeypatch.setattr(releases.decisions, "get_release", read_then_changed_underneath)
    with app.app_context():
        with pytest.raises(releases.WrongState) as refused:
            releases.cancel(queued, as_("dev"))  # may cancel others' queued releases, not withdraw them
        assert str(refused.value) == (f"Release #{queued} changed while you were cancelling it (it is pending "
                                      "approval now); nothing was changed. Look at it again before you retry.")
        monkeypatch.undo()
        assert row(queued).state == "QUEUED"


# -- the review of an emergency release ------------------------------------------------------------

def test_only_an_emergency_release_is_reviewed(app, api, waiting):
    with app.app_context():
        with pytest.raises(releases.WrongState) as refused:
            releases.review(waiting, as_("approver"), "fine")
        assert str(refused.value) == f"Release #{waiting} is not an emergency release, so it needs no review."
        assert row(waiting).reviewed_at is None


def test_an_emergency_release_is_reviewed_only_by_someone_who_may_approve_there(app, finished_emergency):
    with app.app_context():
        with pytest.raises(PermissionDenied) as refused:
            releases.review(finished_emergency, as_("member"), "fine")
        assert str(refused.value) == ("You need the \u201cRelease Approval/Reject\u201d permission on shop/prod to "
                                      "do this; ask an admin for a grant.")
        assert row(finished_emergency).reviewed_at is None


def test_the_triggerer_of_an_emergency_release_never_reviews_it(app, finished_emergency):
    from webapp.accounts import add_grant
    from webapp.models import Environment

    with app.app_context():
        add_grant(user("oncall"), "approve_release",
                  db.session.scalar(sa.select(Environment).where(Environment.name == "prod")))
        with pytest.raises(PermissionDenied) as refused:
            releases.review(finished_emergency, as_("oncall"), "it was the right call")
        assert str(refused.value) == ("You triggered this emergency release, so someone else with the \u201cRelease "
                                      "Approval/Reject\u201d permission must review it.")
        assert row(finished_emergency).reviewed_at is None


REVIEW_NEEDS_A_COMMENT = ("A review needs a comment of at most 5,000 characters: what was done, and whether it "
                          "was the right call.")


@pytest.mark.parametrize("comment", ["", "   \n ", "x" * 5_001])
def test_a_review_needs_a_comment_of_at_most_five_thousand_characters(app, finished_emergency, comment):
    with app.app_context():
        with pytest.raises(Unacceptable) as refused:
            releases.review(finished_emergency, as_("approver"), comment)
        assert str(refused.value) == REVIEW_NEEDS_A_COMMENT
        assert row(finished_emergency).reviewed_at is None


def test_a_review_of_five_thousand_characters_once_trimmed_is_taken_trimmed(app, finished_emergency):
    comment = "y" * 5_000
    with app.app_context():
        reviewed = releases.review(finished_emergency, as_("approver", "ui"), f"  {comment}\n")
        assert (reviewed.reviewed_by.username, reviewed.review_comment) == ("approver", comment)
        stored = row(finished_emergency)
        assert (stored.reviewed_by_id, stored.review_comment) == (user("approver").id, comment)
        assert stored.reviewed_at is not None
        [event] = events(finished_emergency, "review")
        assert (event.actor.username, event.via, event.reason) == ("approver", "ui", comment)


def test_an_emergency_release_that_has_not_finished_is_not_reviewed_yet(app, api, people, shop):
    from tests.unit.decisions_support import EMERGENCY_REASON, environment

    assert api("admin").patch("/api/v1/projects/shop/environments/prod",
                              json={"allow_break_glass": True}).status_code == 200
    with app.app_context():
        people.add("oncall", "trigger_release", "break_glass", environment=environment("prod"))
    urgent = api("oncall").post("/api/v1/projects/shop/environments/prod/releases",
                                json={"resources": [], "break_glass": {"reason": EMERGENCY_REASON}}).json
    with app.app_context():
        with pytest.raises(releases.WrongState) as refused:
            releases.review(urgent["id"], as_("approver"), "early")
        assert str(refused.value) == (f"Release #{urgent['id']} is in progress, so it cannot be reviewed (only a "
                                      "release that is finished can); nothing was changed.")
        assert row(urgent["id"]).reviewed_at is None


def test_an_emergency_release_is_reviewed_once_and_the_second_reviewer_is_told_by_whom(app, people,
                                                                                      finished_emergency):
    people.add("lead", "approve_release")
    with app.app_context():
        releases.review(finished_emergency, as_("approver"), "right call")
        with pytest.raises(releases.WrongState) as refused:
            releases.review(finished_emergency, as_("lead"), "me too")
        assert str(refused.value) == (f"Release #{finished_emergency} was reviewed already, by approver; "
                                      "nothing was changed.")
        stored = row(finished_emergency)
        assert (stored.reviewed_by.username, stored.review_comment) == ("approver", "right call")
        assert len(events(finished_emergency, "review")) == 1


def test_a_review_whose_reviewer_is_gone_is_said_to_be_by_someone(app, people, finished_emergency):
    from webapp.models import utcnow

    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == finished_emergency)
                           .values(reviewed_at=utcnow(), reviewed_by_id=None, review_comment="done"))
        db.session.commit()
        with pytest.raises(releases.WrongState) as refused:
            releases.review(finished_emergency, as_("approver"), "me too")
        assert str(refused.value) == (f"Release #{finished_emergency} was reviewed already, by someone; "
                                      "nothing was changed.")
        assert row(finished_emergency).review_comment == "done"
