"""Ending email links (transactions.revoke_email_links, as a deactivation, a lost grant, a mail
that could not be sent or a release that stopped waiting use it): only the links asked for end,
and a link used or ended already keeps what it was, with the reason people are shown."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import trigger
from webapp.extensions import db
from webapp.models import EmailLink, User, utcnow
from webapp.notify import email_links
from webapp.transactions import revoke_email_links

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}
DEACTIVATED = "the person it was sent to was deactivated"


@pytest.fixture()
def release_id(api, people, new_environment, run_jobs):
    new_environment(WAITS)
    people.add("alice", "approve_release")
    people.add("bob", "approve_release")
    found = trigger(api)
    run_jobs()
    return found


def user(name: str) -> User:
    return db.session.scalar(sa.select(User).where(User.username == name))


def test_only_the_links_asked_for_end_and_others_keep_working(app, release_id):
    with app.app_context():
        alice, bob = user("alice"), user("bob")
        alices, bobs = (email_links.issue(u.id, release_id, "approve") for u in (alice, bob))
        db.session.commit()
        assert revoke_email_links(EmailLink.user_id == alice.id, DEACTIVATED) == 1
        db.session.commit()
        assert email_links.pair_refusal(email_links.find(bobs), bob) is None
        assert email_links.pair_refusal(email_links.find(alices), alice).message == (
            f"This link no longer works: {DEACTIVATED}.")


def test_a_link_used_or_ended_already_keeps_what_it_was(app, release_id):
    with app.app_context():
        alice = user("alice")
        used, ended, live = (email_links.issue(alice.id, release_id, "approve") for _ in range(3))
        db.session.commit()
        email_links.find(used).used_at = utcnow()
        assert revoke_email_links(EmailLink.id == email_links.find(ended).id,
                                  "the mail carrying it could not be sent") == 1
        db.session.commit()
        assert revoke_email_links(EmailLink.user_id == alice.id, DEACTIVATED) == 1  # the live one alone
        db.session.commit()
        assert email_links.find(used).revoked_at is None
        assert email_links.refusal(email_links.find(ended), alice).message == (
            "This link no longer works: the mail carrying it could not be sent.")
        assert email_links.refusal(email_links.find(live), alice).message == (
            f"This link no longer works: {DEACTIVATED}.")
