"""Each reason an email link refuses, as email_links.refusal and pair_refusal give it: its kind,
the whole sentence its page shows and its HTTP status; where a link stops working exactly (its
expiry, the action asked); which links are found (find) and what issuing one stores (issue)."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.web.email_link_support import (
    change_link,
    issue_pair,
    ruled_release,  # noqa: F401 - a fixture, used by name
    user,
)
from webapp import releases
from webapp.extensions import db
from webapp.models import EmailLink, Release
from webapp.notify import email_links
from webapp.notify.email_links import Refusal
from webapp.transactions import Actor

AT = datetime(2026, 12, 1, 9, 30)  # in the past


def link(token: str) -> EmailLink:
    db.session.expire_all()
    return email_links.find(token)


# -- the link itself: unknown, someone else's, used, revoked, expired ------------------------------

def test_no_link_is_unknown_and_someone_elses_is_foreign(app, ruled_release):
    with app.app_context():
        approve, _ = issue_pair("alice", ruled_release)
        assert email_links.refusal(None, user("alice")) == Refusal(
            "unknown", "This link is not a valid Releasegate link. Check that the whole address was copied, or open "
            "the release from the dashboard.", 404)
        assert email_links.pair_refusal(None, user("alice"), "approve") == email_links.UNKNOWN
        assert email_links.refusal(link(approve), user("bob")) == Refusal(
            "foreign", "This link was sent to someone else, so it does not work for you. Sign in as the person it "
            "was sent to, or decide from the release page if you may.", 403)


def test_a_used_link_says_when_it_was_used(app, ruled_release):
    with app.app_context():
        approve, _ = issue_pair("alice", ruled_release)
        change_link(approve, used_at=AT)
        assert email_links.refusal(link(approve), user("alice")) == Refusal(
            "used", "This link was already used on 2026-12-01 at 09:30 UTC; each link works once. The release page "
            "shows what happened since.", 409)


def test_a_revoked_link_says_why_or_that_it_was_revoked(app, ruled_release):
    with app.app_context():
        approve, reject = issue_pair("alice", ruled_release)
        change_link(approve, revoked_at=AT, revoked_reason="the release went back to the queue")
        change_link(reject, revoked_at=AT)
        assert email_links.refusal(link(approve), user("alice")) == Refusal(
            "revoked", "This link no longer works: the release went back to the queue.", 410)
        assert email_links.refusal(link(reject), user("alice")) == Refusal(
            "revoked", "This link no longer works: it was revoked.", 410)


def test_a_link_expires_at_the_moment_it_says_not_a_moment_later(app, ruled_release):
    with app.app_context():
        approve, _ = issue_pair("alice", ruled_release)
        change_link(approve, expires_at=AT)
        expired = Refusal("expired", "This link expired on 2026-12-01 at 09:30 UTC. Decide from the release page "
                          "instead.", 410)
        assert email_links.refusal(link(approve), user("alice"), AT) == expired
        assert email_links.refusal(link(approve), user("alice"), AT + timedelta(days=1)) == expired
        assert email_links.refusal(link(approve), user("alice"), AT - timedelta(microseconds=1)) is None
        assert email_links.refusal(link(approve), user("alice")) == expired  # now, by the clock: long after


# -- the release and the addressee: decided, no longer allowed, not counting -----------------------

def test_a_link_of_a_release_that_stopped_waiting_says_what_it_is_now(app, ruled_release):
    with app.app_context():
        approve, _ = issue_pair("alice", ruled_release)
        db.session.execute(sa.update(Release).where(Release.id == ruled_release).values(state="IN_PROGRESS"))
        db.session.commit()
        assert email_links.refusal(link(approve), user("alice")) == Refusal(
            "decided", f"Release #{ruled_release} is no longer waiting for a decision (it is in progress), so this "
            "link no longer works; nothing was changed.", 409)


LOST_GRANT = ("You no longer hold the \u201cRelease Approval/Reject\u201d permission on svc/env, so this link no "
              "longer works.")


def test_a_link_of_someone_without_the_grant_or_deactivated_no_longer_works(app, ruled_release):
    from webapp.models import Grant

    with app.app_context():
        alices, _ = issue_pair("alice", ruled_release)
        bobs, _ = issue_pair("bob", ruled_release)
        db.session.execute(sa.delete(Grant).where(Grant.user_id == user("alice").id))
        db.session.commit()
        assert email_links.refusal(link(alices), user("alice")) == Refusal("not_allowed", LOST_GRANT, 403)
        bobs_link, bob = link(bobs), user("bob")
        bob.active = False  # deactivated, the grant kept (the links are judged on the user as loaded)
        assert email_links.refusal(bobs_link, bob) == Refusal("not_allowed", LOST_GRANT, 403)
        db.session.rollback()


def test_a_link_to_ones_own_release_says_the_state_machines_sentence(app, api, ruled_release, run_jobs):
    from tests.helpers import trigger

    assert api("admin").patch("/api/v1/projects/svc/environments/env",
                              json={"allow_self_approval": False}).status_code == 200
    releases_of_approver = trigger(api, "approver")
    with app.app_context():
        releases.cancel(ruled_release, Actor(user("dev"), "api"))  # the slot, for approver's release
    run_jobs()
    with app.app_context():
        approve, _ = issue_pair("approver", releases_of_approver)
        assert email_links.refusal(link(approve), user("approver")) == Refusal(
            "not_allowed", "You triggered this release, so someone else must approve or reject it (withdraw it if it "
            "should not go ahead).", 403)


def test_an_approve_link_of_someone_whose_approval_counts_for_nothing_says_why(app, ruled_release):
    with app.app_context():
        approvers, _ = issue_pair("approver", ruled_release)  # may decide, in neither group
        assert email_links.refusal(link(approvers), user("approver")) == Refusal(
            "not_counting", "Your approval would count for no rule still unmet (sre needs 1 more from group sre; dba "
            "needs 1 more from group dba); someone who can count must approve.", 409)


def test_a_reject_link_of_someone_who_could_count_for_no_rule_says_who_may_reject(app, ruled_release):
    with app.app_context():
        _, reject = issue_pair("approver", ruled_release)
        refused = Refusal("not_allowed", "Only someone who could approve for one of its rules may reject this release "
                          "(members of dba, sre). This link does not work for you.", 403)
        assert email_links.refusal(link(reject), user("approver")) == refused  # its own action, reject
        assert email_links.refusal(link(reject), user("approver"), action="reject") == refused


def test_someone_who_approved_already_may_still_reject_but_not_approve_again(app, ruled_release):
    with app.app_context():
        approve, reject = issue_pair("alice", ruled_release)
        assert email_links.refusal(link(reject), user("alice")) is None
        assert email_links.refusal(link(approve), user("alice"), action="reject") is None
        releases.approve(ruled_release, Actor(user("alice"), "api"))
        not_again = Refusal("not_counting", "You approved this release already; the rules still unmet need other "
                            "people.", 409)
        assert email_links.refusal(link(approve), user("alice")) == not_again
        assert email_links.refusal(link(reject), user("alice"), action="approve") == not_again
        assert email_links.refusal(link(reject), user("alice")) is None  # sre's, so she may still reject
        # Her pair rejects through either link, judged both on reject: neither approves again.
        assert email_links.pair_refusal(link(reject), user("alice"), "reject") is None
        assert email_links.pair_refusal(link(approve), user("alice"), "reject") is None
        assert email_links.allowed_actions(link(reject), user("alice")) == ["reject"]
        assert email_links.pair_refusal(link(reject), user("alice"), "approve") == not_again


def test_a_grant_on_the_links_environment_alone_is_enough_to_be_judged_further(app, people, ruled_release):
    from tests.unit.decisions_support import environment

    with app.app_context():
        people.add("scoped", "approve_release", environment=environment("env"))
    with app.app_context():
        approve, _ = issue_pair("scoped", ruled_release)
        assert email_links.refusal(link(approve), user("scoped")).kind == "not_counting"  # in neither group


# -- the pair ------------------------------------------------------------------------------------------

def test_a_link_whose_counterpart_was_used_says_the_pair_decides_once(app, ruled_release):
    with app.app_context():
        approve, reject = issue_pair("alice", ruled_release)
        change_link(reject, used_at=AT)
        for action in ("approve", "reject", None):
            assert email_links.pair_refusal(link(approve), user("alice"), action) == Refusal(
                "used", "The other link of this mail was already used on 2026-12-01 at 09:30 UTC; the Approve and "
                "Reject links of one mail decide once. The release page shows what happened since.", 409)
        assert email_links.allowed_actions(link(approve), user("alice")) == []


def test_a_link_whose_counterpart_was_revoked_or_expired_refuses_as_the_counterpart_does(app, ruled_release):
    with app.app_context():
        approve, reject = issue_pair("alice", ruled_release)
        change_link(reject, revoked_at=AT, revoked_reason="the mail carrying it could not be sent")
        assert email_links.pair_refusal(link(approve), user("alice"), "approve") == Refusal(
            "revoked", "This link no longer works: the mail carrying it could not be sent.", 410)
        bobs, bobs_reject = issue_pair("bob", ruled_release)
        change_link(bobs_reject, expires_at=AT)
        assert email_links.pair_refusal(link(bobs), user("bob")).kind == "expired"
        change_link(bobs, expires_at=AT)  # both links judged at the moment asked, not by the clock
        assert email_links.pair_refusal(link(bobs), user("bob"), now=AT - timedelta(seconds=1)) is None


def test_two_links_issued_together_without_a_mail_are_each_others_counterpart(app, ruled_release):
    with app.app_context():
        alice = user("alice")
        approve, reject = (email_links.issue(alice.id, ruled_release, action, now=AT) for action in ("approve",
                                                                                                       "reject"))
        db.session.commit()
        assert email_links.counterpart(link(approve)).id == link(reject).id
        assert email_links.counterpart(link(reject)).id == link(approve).id


# -- finding and issuing ---------------------------------------------------------------------------

def test_a_token_is_found_by_its_sha256_up_to_two_hundred_characters(app, ruled_release):
    with app.app_context():
        approve, reject = issue_pair("alice", ruled_release)
        longest, too_long = "a" * 200, "b" * 201
        change_link(approve, token_hash=hashlib.sha256(longest.encode()).hexdigest())
        change_link(reject, token_hash=hashlib.sha256(too_long.encode()).hexdigest())
        assert email_links.find(longest).action == "approve"
        assert email_links.find(too_long) is None
        assert email_links.find("") is None
        assert email_links.token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_issuing_stores_the_hash_the_addressee_the_mail_and_an_expiry_hours_later(app, ruled_release):
    from webapp.models import OutgoingMail

    with app.app_context():
        alice = user("alice")
        sent = OutgoingMail(kind="approval_request", user_id=alice.id, to_address=alice.email,
                            release_id=ruled_release)
        db.session.add(sent)
        db.session.flush()
        token = email_links.issue(alice.id, ruled_release, "reject", mail_id=sent.id, now=AT)
        db.session.commit()
        stored = db.session.scalar(sa.select(EmailLink).where(EmailLink.token_hash == email_links.token_hash(token)))
        assert (stored.user_id, stored.release_id, stored.action, stored.mail_id, stored.created_at,
                stored.expires_at, stored.used_at, stored.revoked_at) == (
            alice.id, ruled_release, "reject", sent.id, AT, AT + timedelta(hours=app.config["EMAIL_LINK_HOURS"]),
            None, None)
        assert len(token) == 43 and token not in {stored.token_hash}  # 32 random bytes, never stored
        clocked = email_links.issue(alice.id, ruled_release, "approve")
        db.session.commit()
        assert link(clocked).expires_at - link(clocked).created_at == timedelta(hours=app.config["EMAIL_LINK_HOURS"])


def test_issuing_a_link_for_an_action_links_do_not_have_is_a_programming_error(app, ruled_release):
    with app.app_context(), pytest.raises(ValueError, match=r"^unknown link action 'merge'$"):
        email_links.issue(user("alice").id, ruled_release, "merge")
