"""When an Approve or Reject link refuses, and changes nothing: expired, someone else's, its
release already decided, its user's permission lost or the user deactivated, one's own release
without self-approval; two posts at once giving one decision; links ending in the transaction
that ends the right to use them (issue 10, item 7); decide() judging the link again.
"""
from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa

from tests.helpers import trigger
from tests.notify_support import links, path, snapshot
from tests.web.email_link_support import (
    WAITS,
    app_config,  # noqa: F401 - a fixture, used by name
    assert_refused,
    decide,
    link_use,
    mailed,  # noqa: F401 - a fixture, used by name
    ruled,  # noqa: F401 - a fixture, used by name
)

# -- refusals: expired, foreign, decided, permission lost, deactivated -------------------------------

def _set_link(app, link: str, **values) -> None:
    from webapp.extensions import db
    from webapp.models import EmailLink
    from webapp.notify.email_links import token_hash

    with app.app_context():
        db.session.execute(sa.update(EmailLink).where(EmailLink.token_hash == token_hash(link.rsplit("/", 1)[1]))
                           .values(**values))
        db.session.commit()


def test_an_expired_link_refuses_and_changes_nothing(app, web, mailed):
    from webapp.models import utcnow

    link = mailed.link("approver")
    _set_link(app, link, expires_at=utcnow() - timedelta(minutes=1))
    assert_refused(app, web("approver"), link, "expired", 410, "This link expired on")


def test_another_users_link_refuses_and_changes_nothing(app, web, mailed):
    # admin may approve, but the link was sent to approver
    assert_refused(app, web("admin"), mailed.link("approver"), "foreign", 403, "sent to someone else")


def test_another_users_link_tells_a_person_without_the_permission_so(app, web, mailed):
    before = snapshot(app)
    link = mailed.link("approver")
    member = web("member")
    page = member.get(link)
    assert page.status_code == 403 and "sent to someone else" in page.text
    assert "Retire the legacy database" not in page.text  # nothing about the release leaks
    assert decide(member, link).status_code == 403
    assert snapshot(app) == before


def test_a_link_whose_release_was_already_decided_refuses_and_changes_nothing(app, api, web, mailed):
    assert api("admin").post(f"/api/v1/releases/{mailed.id}/reject", json={"comment": "no"}).status_code == 200
    assert_refused(app, web("approver"), mailed.link("approver"), "decided", 409, "no longer waiting")


def test_a_link_whose_user_lost_the_permission_refuses_and_changes_nothing(app, web, mailed):
    from webapp.extensions import db
    from webapp.models import Grant, User

    with app.app_context():
        user_id = db.session.scalar(sa.select(User.id).where(User.username == "approver"))
        db.session.execute(sa.delete(Grant).where(Grant.user_id == user_id, Grant.permission == "approve_release"))
        db.session.commit()
    link = mailed.link("approver")
    approver = web("approver")
    before = snapshot(app)
    page = approver.get(link)
    assert page.status_code == 403 and 'data-refusal="not_allowed"' in page.text
    assert "no longer hold" in page.text
    posted = decide(approver, link)
    assert posted.status_code == 403 and "Release Approval/Reject" in posted.text
    assert snapshot(app) == before


def test_a_link_of_a_deactivated_user_refuses_and_changes_nothing(app, web, mailed, run_notify_jobs):
    from webapp import accounts
    from webapp.extensions import db
    from webapp.models import EmailLink, User
    from webapp.transactions import Actor

    link = mailed.link("approver")
    approver = web("approver")  # signed in before the deactivation
    csrf = approver.csrf
    with app.app_context():
        admin = db.session.scalar(sa.select(User).where(User.username == "admin"))
        target = db.session.scalar(sa.select(User).where(User.username == "approver"))
        accounts.deactivate_user(Actor(admin, "ui"), target)
    run_notify_jobs()  # nothing left to do: the deactivation itself ended the unused links for good
    with app.app_context():
        rows = db.session.scalars(sa.select(EmailLink).join(User).where(User.username == "approver")).all()
        assert rows and all(r.revoked_at is not None and "deactivated" in r.revoked_reason for r in rows)
    before = snapshot(app)
    response = approver.get(link)
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]
    response = decide(approver, link, csrf=csrf)
    assert response.status_code in (302, 400)
    assert snapshot(app) == before


def test_a_link_to_ones_own_release_does_not_work_without_self_approval(app, api, web, new_environment, run_jobs,
                                                                        run_notify_jobs, smtp_server):
    from webapp.extensions import db
    from webapp.models import Release, User
    from webapp.notify import email_links

    new_environment(WAITS, allow_self_approval=True)
    release_id = trigger(api, "approver")
    run_jobs()
    run_notify_jobs()
    link = path(links(smtp_server.inbox.to("approver@example.com")[0])["Approve"])
    assert api("admin").patch("/api/v1/projects/svc/environments/env",
                              json={"allow_self_approval": False}).status_code == 200
    assert_refused(app, web("approver"), link, "not_allowed", 403, "You triggered this release")
    with app.app_context():
        assert db.session.get(Release, release_id).state == "PENDING_APPROVAL"
        user = db.session.scalar(sa.select(User).where(User.username == "approver"))
        assert email_links.refusal(email_links.find(link.rsplit("/", 1)[1]), user).kind == "not_allowed"


# -- races ---------------------------------------------------------------------------------------------

def _race(posts) -> list:
    barrier = threading.Barrier(len(posts))
    results: list = [None] * len(posts)

    def run(index, post):
        barrier.wait()
        results[index] = post()

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(posts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_concurrent_posts_of_one_link_give_one_decision(api, web, mailed):
    first, second = web("approver"), web("approver")  # two browsers of the addressee
    link = mailed.link("approver")
    results = _race([lambda: decide(first, link, "one"), lambda: decide(second, link, "two")])
    assert sorted(r.status_code for r in results) == [200, 409]
    release = api("member").get(f"/api/v1/releases/{mailed.id}").json
    assert release["state"] == "APPROVED" and len(release["decisions"]) == 1


def test_approve_and_reject_links_posted_at_once_give_one_decision(api, web, mailed):
    admin, approver = web("admin"), web("approver")
    results = _race([lambda: decide(admin, mailed.link("admin", "Reject"), "no", action="reject"),
                     lambda: decide(approver, mailed.link("approver"), "yes")])
    assert sorted(r.status_code for r in results) == [200, 409]
    release = api("member").get(f"/api/v1/releases/{mailed.id}").json
    assert release["state"] in ("APPROVED", "REJECTED") and len(release["decisions"]) == 1
    loser = next(r for r in results if r.status_code == 409)
    assert "no longer waiting" in loser.text and "Nothing was changed" in loser.text


def test_one_addressees_approve_and_reject_links_posted_at_once_give_one_decision(app, api, web, ruled):
    """Both of alice's links at once, from two browsers: her approval would count for sre and leave the
    release waiting, so only the pair's compare-and-set stops her deciding twice."""
    first, second = web("alice"), web("alice")
    results = _race([lambda: decide(first, ruled.link("alice"), "yes", action="approve"),
                     lambda: decide(second, ruled.link("alice", "Reject"), "no", action="reject")])
    assert sorted(r.status_code for r in results) == [200, 409]
    release = api("member").get(f"/api/v1/releases/{ruled.id}").json
    assert len(release["decisions"]) == 1 and release["decisions"][0]["by"] == "alice"
    assert release["state"] == ("PENDING_APPROVAL" if release["decisions"][0]["decision"] == "APPROVE"
                                else "REJECTED")
    assert link_use(app, ruled.id, "alice") == {"approve": True, "reject": True}


def test_the_other_links_of_a_decided_release_stop_working(app, web, mailed):
    assert decide(web("approver"), mailed.link("approver")).status_code == 200
    assert_refused(app, web("admin"), mailed.link("admin", "Reject"), "decided", 409, "no longer waiting")


# -- links end in the transaction that ends the right to use them (issue 10, item 7) ----------------

def _people(*names):
    from webapp.extensions import db
    from webapp.models import User

    return [db.session.scalar(sa.select(User).where(User.username == name)) for name in names]


def test_a_deactivation_while_redis_is_down_still_ends_the_links_for_good(app, web, mailed):
    from redis import Redis

    from tests.notify_support import free_port
    from webapp import accounts
    from webapp.transactions import Actor

    link = mailed.link("approver")
    with app.app_context():
        admin, approver = _people("admin", "approver")
        # Nothing listens there: every enqueue after the commit fails, as with Redis down.
        app.extensions["releasegate_redis"] = Redis(port=free_port(), socket_connect_timeout=0.5)
        try:
            accounts.deactivate_user(Actor(admin, "ui"), approver)
        finally:
            app.extensions.pop("releasegate_redis")
        accounts.reactivate_user(Actor(admin, "ui"), approver)
    assert_refused(app, web("approver"), link, "revoked", 410, "the person it was sent to was deactivated")


def test_revoking_the_approval_grant_ends_the_links_even_if_it_is_granted_again(app, web, mailed):
    from webapp import accounts
    from webapp.transactions import Actor

    link = mailed.link("approver")
    with app.app_context():
        admin, approver = _people("admin", "approver")
        grant_id = next(g.id for g in approver.grants if g.permission == "approve_release")
        accounts.revoke_grant(Actor(admin, "ui"), approver, grant_id)
        accounts.grant_permission(Actor(admin, "ui"), approver, "approve_release")
    assert_refused(app, web("approver"), link, "revoked", 410, "lost the permission")


def test_deciding_judges_the_link_again_inside_its_transaction_and_refuses_an_unknown_or_foreign_one(
        app, api, mailed):
    """decide() is a door of its own (the view checks first, but a link can change in between):
    it refuses, changing nothing, whatever the page said."""
    from webapp.extensions import db
    from webapp.models import User
    from webapp.notify import email_links

    with app.test_request_context():
        approver = db.session.scalar(sa.select(User).where(User.username == "approver"))
        assert email_links.decide("not-a-link-token", approver, "approve") == email_links.UNKNOWN
        admins = path(mailed.link("admin")).rsplit("/", 1)[1]
        assert email_links.decide(admins, approver, "approve") == email_links.FOREIGN
    assert api("member").get(f"/api/v1/releases/{mailed.id}").json["state"] == "PENDING_APPROVAL"
    assert link_use(app, mailed.id, "admin") == {"approve": False, "reject": False}

