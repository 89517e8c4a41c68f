"""The two links of one mail (notify.email_links): which link is a link's counterpart (same
addressee, release, mail and moment, the other action), what a link's page offers, and what
deciding through a link does with the action it is asked for."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger
from webapp.extensions import db
from webapp.models import Decision, EmailLink, OutgoingMail, Release, User, utcnow
from webapp.notify import email_links

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}


@pytest.fixture()
def pending(api, people, new_environment, run_jobs):
    """Two releases dev triggered, pending approval on svc/env and svc/other; alice and bob approve."""
    new_environment(WAITS)
    new_environment(WAITS, name="other")
    people.add("alice", "approve_release")
    people.add("bob", "approve_release")
    ids = [trigger(api, path="svc/env"), trigger(api, path="svc/other")]
    run_jobs()
    assert [state(api, release_id) for release_id in ids] == ["PENDING_APPROVAL", "PENDING_APPROVAL"]
    return ids


def user(name: str) -> User:
    return db.session.scalar(sa.select(User).where(User.username == name))


def mail(to: User, release_id: int) -> int:
    sent = OutgoingMail(kind="approval_request", user_id=to.id, to_address=to.email, release_id=release_id)
    db.session.add(sent)
    db.session.flush()
    return sent.id


def link(token: str) -> EmailLink:
    return email_links.find(token)


def test_a_links_counterpart_is_the_other_action_of_its_own_mail_and_moment_only(app, pending):
    release_id, other_release = pending
    now = utcnow()
    with app.app_context():
        alice, bob = user("alice"), user("bob")
        first, second = mail(alice, release_id), mail(alice, release_id)
        # Issued first, so each would be found first: a reject link differing in one thing only.
        decoys = [email_links.issue(bob.id, release_id, "reject", mail_id=first, now=now),
                  email_links.issue(alice.id, other_release, "reject", mail_id=first, now=now),
                  email_links.issue(alice.id, release_id, "reject", mail_id=second, now=now),
                  email_links.issue(alice.id, release_id, "reject", mail_id=first, now=now - timedelta(hours=1))]
        approve = email_links.issue(alice.id, release_id, "approve", mail_id=first, now=now)
        reject = email_links.issue(alice.id, release_id, "reject", mail_id=first, now=now)
        db.session.commit()
        assert email_links.counterpart(link(approve)).id == link(reject).id
        assert email_links.counterpart(link(reject)).id == link(approve).id
        for decoy in decoys:  # the decoys used up: alice's own pair still works
            link(decoy).used_at = now
        db.session.commit()
        assert email_links.pair_refusal(link(approve), alice, "reject") is None
        assert email_links.allowed_actions(link(reject), alice) == ["approve", "reject"]


def test_a_link_issued_alone_offers_and_decides_only_its_own_action(app, pending):
    release_id, _ = pending
    with app.app_context():
        alice = user("alice")
        token = email_links.issue(alice.id, release_id, "approve")
        db.session.commit()
        assert email_links.allowed_actions(link(token), alice) == ["approve"]
        refused = email_links.decide(token, alice, "reject")
        assert refused == email_links.Refusal(
            "not_allowed", f"This link can only approve release #{release_id}; decide from the release page instead.",
            403)
        assert link(token).used_at is None and db.session.get(Release, release_id).state == "PENDING_APPROVAL"


def test_deciding_through_a_link_without_a_comment_records_none(app, pending):
    release_id, _ = pending
    with app.app_context():
        alice = user("alice")
        token = email_links.issue(alice.id, release_id, "approve")
        db.session.commit()
        decided = email_links.decide(token, alice, "approve")
        assert isinstance(decided, email_links.Decided) and decided.action == "approve"
        [decision] = db.session.scalars(sa.select(Decision).where(Decision.release_id == release_id))
        assert (decision.decision, decision.comment, decision.via) == ("APPROVE", "", "email")


def test_deciding_an_action_links_do_not_have_is_a_programming_error(app, pending):
    with app.app_context(), pytest.raises(ValueError, match=r"^unknown link action 'merge'$"):
        email_links.decide("any-token", user("alice"), "merge")


@pytest.mark.parametrize("meanwhile", ["used", "revoked", "expired", "readdressed"])
def test_the_burn_itself_refuses_a_link_that_changed_after_it_was_judged(app, pending, monkeypatch, meanwhile):
    """The burn is a compare-and-set on every condition the link was judged on: a request that
    used the link (or a revocation, its expiry, another addressee) landing between the judgement
    and the UPDATE is caught by the UPDATE, on any database. Made to happen deterministically by
    changing the row in the deciding transaction itself, right after the judgement."""
    release_id, _ = pending
    with app.app_context():
        alice, bob = user("alice"), user("bob")
        sent = mail(alice, release_id)
        token = email_links.issue(alice.id, release_id, "approve", mail_id=sent)
        email_links.issue(alice.id, release_id, "reject", mail_id=sent)
        db.session.commit()
        judged_counterpart = email_links.counterpart
        change = {"used": {"used_at": utcnow()}, "revoked": {"revoked_at": utcnow()},
                  "expired": {"expires_at": utcnow() - timedelta(seconds=1)}, "readdressed": {"user_id": bob.id}}

        def counterpart_after_a_change(found: EmailLink) -> EmailLink | None:
            db.session.execute(sa.update(EmailLink).where(EmailLink.id == found.id).values(**change[meanwhile]))
            return judged_counterpart(found)

        monkeypatch.setattr(email_links, "counterpart", counterpart_after_a_change)
        refused = email_links.decide(token, alice, "approve")
        assert isinstance(refused, email_links.Refusal), refused
        monkeypatch.undo()
        assert db.session.get(Release, release_id).state == "PENDING_APPROVAL"
        assert db.session.scalars(sa.select(Decision).where(Decision.release_id == release_id)).all() == []
