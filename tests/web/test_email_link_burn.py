"""Deciding through an email link (email_links.decide): the burn of the link and its counterpart
is one compare-and-set on every condition they were judged on, in the transaction of the decision
itself; a burn that misses a row, or a decision the state machine refuses afterwards, leaves
both links unused and nothing decided; what a decision answers (Decided).

A change "meanwhile" is made deterministically inside the deciding transaction, after the
judgement (decide's own call of counterpart), as another request's committed change would land
on PostgreSQL. Being in the same transaction, it is rolled back with the burn: the link is then
as it was judged, and the refusal is the one decide falls back on."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.web.email_link_support import (
    issue_pair,
    ruled_release,  # noqa: F401 - a fixture, used by name
    user,
)
from webapp.extensions import db
from webapp.models import Decision, EmailLink, Release, utcnow
from webapp.notify import email_links

CHANGES = {"used": lambda now, bob: {"used_at": now}, "revoked": lambda now, bob: {"revoked_at": now},
           "expired": lambda now, bob: {"expires_at": now - timedelta(seconds=1)},
           "expired at that very moment": lambda now, bob: {"expires_at": now},
           "readdressed": lambda now, bob: {"user_id": bob.id}}


def unchanged(release_id: int) -> None:
    """The release still waits, undecided, and no link of it was used."""
    db.session.expire_all()
    assert db.session.get(Release, release_id).state == "PENDING_APPROVAL"
    assert db.session.scalars(sa.select(Decision).where(Decision.release_id == release_id)).all() == []
    assert db.session.scalars(sa.select(EmailLink.id).where(EmailLink.release_id == release_id,
                                                            EmailLink.used_at.is_not(None))).all() == []


def rejected_underneath(release_id: int) -> None:
    """The release rejected by another door, as the row says (the state machine is not asked)."""
    db.session.execute(sa.update(Release).where(Release.id == release_id).values(state="REJECTED", holds_slot=False))


def after_the_judgement(monkeypatch, change) -> None:
    """Run change(link, other) in the deciding transaction right after the pair was judged:
    decide's own call of counterpart is the second (pair_refusal's is the first)."""
    judged_counterpart = email_links.counterpart
    calls = []

    def counterpart(found: EmailLink) -> EmailLink | None:
        other = judged_counterpart(found)
        calls.append(found.id)
        if len(calls) == 2:
            change(found, other)
        return other

    monkeypatch.setattr(email_links, "counterpart", counterpart)


# A counterpart is found by its addressee: readdressed, it would be no counterpart.
@pytest.mark.parametrize(("meanwhile", "whose"), [(meanwhile, "the link") for meanwhile in CHANGES] + [
    (meanwhile, "its counterpart") for meanwhile in CHANGES if meanwhile != "readdressed"])
def test_a_burn_that_misses_either_link_of_the_pair_decides_nothing(app, ruled_release, monkeypatch, meanwhile,
                                                                   whose):
    moment = utcnow()
    monkeypatch.setattr(email_links, "utcnow", lambda: moment)  # decide's now, to end a link exactly then
    with app.app_context():
        approve, _ = issue_pair("alice", ruled_release)
        bob = user("bob")

        def change(found, other):
            target = found if whose == "the link" else other
            db.session.execute(sa.update(EmailLink).where(EmailLink.id == target.id)
                               .values(**CHANGES[meanwhile](moment, bob)))

        after_the_judgement(monkeypatch, change)
        assert email_links.decide(approve, user("alice"), "approve", "yes") == email_links.UNKNOWN
        unchanged(ruled_release)


def test_a_decision_the_state_machine_refuses_after_the_burn_leaves_both_links_unused(app, ruled_release,
                                                                                     monkeypatch):
    with app.app_context():
        approve, reject = issue_pair("alice", ruled_release)

        def decided_meanwhile(found, other):
            rejected_underneath(ruled_release)

        after_the_judgement(monkeypatch, decided_meanwhile)
        assert email_links.decide(reject, user("alice"), "approve", "yes") == email_links.Refusal(
            "decided", "The release was decided meanwhile; nothing was changed.", 409)
        unchanged(ruled_release)
        monkeypatch.undo()
        assert email_links.allowed_actions(email_links.find(approve), user("alice")) == ["approve", "reject"]


def test_a_missed_burn_answers_with_the_links_refusal_when_there_is_one(app, ruled_release, monkeypatch):
    """When the rows after the rollback refuse the link, that refusal is the answer (here the
    clock, which no rollback turns back, passes the link's expiry while the burn misses)."""
    moment = utcnow()
    with app.app_context():
        approve, _ = issue_pair("alice", ruled_release)

        def used_as_it_expires(found, other):
            db.session.execute(sa.update(EmailLink).where(EmailLink.id == found.id).values(used_at=moment))
            monkeypatch.setattr(email_links, "utcnow", lambda: moment + timedelta(days=365))

        after_the_judgement(monkeypatch, used_as_it_expires)
        refused = email_links.decide(approve, user("alice"), "approve")
        assert (refused.kind, refused.status) == ("expired", 410)
        unchanged(ruled_release)


def test_a_decision_refused_after_the_burn_answers_with_the_links_refusal_when_there_is_one(app, ruled_release,
                                                                                           monkeypatch):
    """When the rows after the rollback refuse the link, that refusal is the answer."""
    moment = utcnow()
    with app.app_context():
        approve, _ = issue_pair("alice", ruled_release)
        link_id = email_links.find(approve).id

        def expiring_as_it_is_decided(found, other):
            rejected_underneath(ruled_release)
            monkeypatch.setattr(email_links, "utcnow", lambda: moment + timedelta(days=365))

        after_the_judgement(monkeypatch, expiring_as_it_is_decided)
        refused = email_links.decide(approve, user("alice"), "approve")
        assert refused.kind == "expired" and refused.status == 410
        unchanged(ruled_release)
        assert db.session.get(EmailLink, link_id).used_at is None


@pytest.mark.parametrize(("action", "comment"), [("approve", "sre agrees"), ("reject", "")])
def test_a_decision_burns_both_links_and_answers_the_release_and_no_bot_release_while_rules_remain(
        app, ruled_release, action, comment):
    with app.app_context():
        approve, reject = issue_pair("alice", ruled_release)
        decided = email_links.decide(reject, user("alice"), action, comment)
        assert isinstance(decided, email_links.Decided)
        assert (decided.release.id, decided.action, decided.bot_release_id) == (ruled_release, action, None)
        assert decided.release.state == ("PENDING_APPROVAL" if action == "approve" else "REJECTED")
        db.session.expire_all()
        assert [(d.user.username, d.decision, d.comment, d.via) for d in db.session.scalars(
            sa.select(Decision).where(Decision.release_id == ruled_release))] == [
            ("alice", action.upper(), comment, "email")]
        used = [email_links.find(token).used_at for token in (approve, reject)]
        assert used[0] is not None and used[0] == used[1]


def test_the_approval_that_meets_the_last_rule_answers_its_bot_release(app, ruled_release):
    with app.app_context():
        email_links.decide(issue_pair("alice", ruled_release)[0], user("alice"), "approve")
        decided = email_links.decide(issue_pair("bob", ruled_release)[1], user("bob"), "approve", "dba agrees")
        bot = db.session.scalar(sa.select(Release).where(Release.parent_release_id == ruled_release))
        assert (decided.release.id, decided.release.state, decided.bot_release_id) == (ruled_release, "APPROVED",
                                                                                       bot.id)


@pytest.mark.parametrize("meanwhile", ["burn missed", "decided meanwhile"])
def test_a_refused_decision_is_judged_again_on_the_action_asked_not_the_links_own(app, ruled_release, monkeypatch,
                                                                                  meanwhile):
    """alice approved already: her Approve link may still reject, not approve. A rejection through it
    that fails on the way is answered as her link answers for reject (nothing left to refuse, so
    decide's own refusal), never with why it would not approve."""
    from webapp import releases
    from webapp.transactions import Actor

    with app.app_context():
        approve, reject = issue_pair("alice", ruled_release)
        releases.approve(ruled_release, Actor(user("alice"), "api"))

        def change(found, other):
            if meanwhile == "burn missed":
                db.session.execute(sa.update(EmailLink).where(EmailLink.id == found.id).values(used_at=utcnow()))
            else:
                rejected_underneath(ruled_release)

        after_the_judgement(monkeypatch, change)
        refused = email_links.decide(approve, user("alice"), "reject", "no")
        assert refused == (email_links.UNKNOWN if meanwhile == "burn missed" else email_links.Refusal(
            "decided", "The release was decided meanwhile; nothing was changed.", 409))
        db.session.expire_all()
        assert db.session.get(Release, ruled_release).state == "PENDING_APPROVAL"
        assert [email_links.find(token).used_at for token in (approve, reject)] == [None, None]
