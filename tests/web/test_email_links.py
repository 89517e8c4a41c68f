"""Approve and Reject links, parsed out of mail a real SMTP server received and followed:
GET never changes anything; the POST of the confirmation page decides, once."""
from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import trigger
from tests.notify_support import links, path, snapshot

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": 'echo "needs a human"\nexit 2\n'}
DESTRUCTIVE = [
    {"resourceType": "service", "resourceName": "api", "resourcePath": "api.json", "changeType": "CREATE"},
    {"resourceType": "database", "resourceName": "legacy", "resourcePath": "db.json", "changeType": "DELETE"},
]


@pytest.fixture()
def app_config(app_config, smtp_server):
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port,
            "BASE_URL": "https://rg.example.com"}


@pytest.fixture()
def mailed(api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    """A release dev triggered, pending approval, whose mails were received: mailed.link(who, "Approve")."""
    new_environment(WAITS)
    release_id = trigger(api, "dev", resources=DESTRUCTIVE, description="Retire the legacy database")
    run_jobs()
    run_notify_jobs()

    class Mailed:
        id = release_id

        @staticmethod
        def link(who: str, label: str = "Approve") -> str:
            [message] = smtp_server.inbox.to(f"{who}@example.com")
            return path(links(message)[label])

    return Mailed


def csrf_of(page_text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page_text).group(1)


def decide(client, link: str, comment: str = "", csrf: str | None = None, action: str = "approve"):
    """Press Approve (or `action`) on the confirmation page of `link`."""
    return client.post(link, data={"csrf_token": csrf or client.csrf, "comment": comment, "action": action})


# -- GET never changes anything ---------------------------------------------------------------------

def test_get_and_head_on_a_link_change_nothing_for_anyone(app, web, mailed):
    before = snapshot(app)
    approve, reject = mailed.link("approver"), mailed.link("approver", "Reject")
    anonymous = app.test_client()
    for client in (anonymous, web("approver"), web("admin"), web("member")):
        for link in (approve, reject):
            for _ in range(2):
                assert client.get(link).status_code in (200, 302, 403)
                assert client.head(link).status_code in (200, 302, 403)
    assert snapshot(app) == before


def test_an_anonymous_visitor_is_sent_to_sign_in_and_back_to_the_confirmation_page(app, mailed):
    link = mailed.link("approver")
    client = app.test_client()
    response = client.get(link)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/sign-in?next={link}"
    sign_in = client.get(response.headers["Location"])
    response = client.post("/sign-in", data={"csrf_token": csrf_of(sign_in.text), "username": "approver",
                                             "password": "approver-password-123", "next": link})
    assert response.status_code == 302 and response.headers["Location"] == link
    page = client.get(link)
    assert page.status_code == 200
    assert f"Approve release #{mailed.id} of svc/env?" in page.text


def test_the_confirmation_page_shows_the_release_its_changes_and_a_comment_box(web, mailed):
    page = web("approver").get(mailed.link("approver"))
    assert page.status_code == 200
    text = page.text
    assert "Retire the legacy database" in text and "dev" in text
    assert "1 DELETE (destructive)" in text and "legacy" in text and "db.json" in text
    assert "needs a human" in text  # the hook output
    assert '<textarea id="comment" name="comment"' in text
    assert 'name="csrf_token"' in text
    for label in ("Approve", "Reject"):  # the page of either link offers both, in the decide bar
        page = web("approver").get(mailed.link("approver", label))
        assert page.status_code == 200
        link = mailed.link("approver", label)
        assert page.text.count(f'<form method="post" action="{link}"') == 1
        bar = page.text[page.text.index('<div class="row decide-bar" id="decide-bar">'):]
        bar = bar[:bar.index("</div>")]
        assert (f'name="action" value="approve" class="button approve">Approve release #{mailed.id}</button>'
                in bar)
        assert f'name="action" value="reject" class="button danger">Reject release #{mailed.id}</button>' in bar


def test_link_pages_are_not_cached_and_do_not_leak_the_address(app, web, mailed):
    link = mailed.link("approver")
    for response in (app.test_client().get(link), web("approver").get(link), web("member").get(link),
                     app.test_client().get("/email/links/not-a-token")):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "same-origin"


# -- the POST decides, once ----------------------------------------------------------------------------

def test_the_post_approves_through_the_state_machine_and_a_second_post_says_the_link_was_used(
        app, api, web, mailed):
    approver = web("approver")
    link = mailed.link("approver")
    response = decide(approver, link, "looks right")
    assert response.status_code == 200
    assert f"Release #{mailed.id} approved" in response.text
    release = api("member").get(f"/api/v1/releases/{mailed.id}").json
    assert release["state"] == "APPROVED" and release["bot_release_id"]
    [decision] = release["decisions"]
    assert (decision["by"], decision["decision"], decision["comment"], decision["via"]) == (
        "approver", "APPROVE", "looks right", "email")
    events = api("member").get(f"/api/v1/releases/{mailed.id}/events").json["items"]
    assert any(e["to"] == "APPROVED" and e["via"] == "email" and e["by"] == "approver" for e in events)

    before = snapshot(app)
    again = decide(approver, link)
    assert again.status_code == 409
    assert "This link was already used" in again.text and "Nothing was changed" in again.text
    assert approver.get(link).status_code == 409
    assert snapshot(app) == before


def test_the_reject_link_rejects_with_the_comment(api, web, mailed):
    response = decide(web("admin"), mailed.link("admin", "Reject"), "not during the freeze", action="reject")
    assert response.status_code == 200 and f"Release #{mailed.id} rejected" in response.text
    release = api("member").get(f"/api/v1/releases/{mailed.id}").json
    assert release["state"] == "REJECTED"
    assert release["decisions"][0]["comment"] == "not during the freeze"
    assert release["decisions"][0]["via"] == "email"


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(app, web, mailed):
    before = snapshot(app)
    approver = web("approver")
    response = approver.post(mailed.link("approver"), data={"comment": "x"})
    assert response.status_code == 400
    response = decide(approver, mailed.link("approver"), csrf="forged")
    assert response.status_code == 400
    assert snapshot(app) == before


def test_an_anonymous_post_changes_nothing(app, mailed):
    before = snapshot(app)
    response = app.test_client().post(mailed.link("approver"), data={"comment": "x"})
    assert response.status_code in (302, 400)
    assert snapshot(app) == before


def test_an_unknown_token_is_not_found(app, web, mailed):
    before = snapshot(app)
    approver = web("approver")
    page = approver.get("/email/links/abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
    assert page.status_code == 404 and "This link is not valid" in page.text
    assert decide(approver, "/email/links/abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").status_code == 404
    assert snapshot(app) == before


# -- either link approves or rejects; the pair decides once (issue 16) ------------------------------

def link_use(app, release_id: int, who: str) -> dict[str, bool]:
    """{"approve": used?, "reject": used?} for the links mailed to `who` about the release."""
    from webapp.extensions import db
    from webapp.models import EmailLink, User

    with app.app_context():
        rows = db.session.execute(sa.select(EmailLink.action, EmailLink.used_at).join(User).where(
            User.username == who, EmailLink.release_id == release_id)).all()
        return {action: used is not None for action, used in rows}


@pytest.mark.parametrize(("label", "action", "to_state"), [
    ("Approve", "approve", "APPROVED"), ("Approve", "reject", "REJECTED"),
    ("Reject", "approve", "APPROVED"), ("Reject", "reject", "REJECTED")])
def test_the_page_of_either_link_approves_or_rejects_and_uses_up_both_links(app, api, web, mailed, label, action,
                                                                            to_state):
    response = decide(web("approver"), mailed.link("approver", label), "decided by mail", action=action)
    assert response.status_code == 200
    assert f"Release #{mailed.id} {to_state.lower()}" in response.text
    release = api("member").get(f"/api/v1/releases/{mailed.id}").json
    assert release["state"] == to_state
    [decision] = release["decisions"]
    assert (decision["by"], decision["decision"], decision["via"], decision["comment"]) == (
        "approver", action.upper(), "email", "decided by mail")
    assert link_use(app, mailed.id, "approver") == {"approve": True, "reject": True}
    assert link_use(app, mailed.id, "admin") == {"approve": False, "reject": False}  # the release ended them


def test_once_the_reject_links_page_approved_neither_link_decides_again(app, api, web, ruled):
    """alice's approval (from her Reject link's page) counts for sre and the release still waits:
    her links, both used, refuse to approve or reject again while everyone else's still work."""
    alice = web("alice")
    approved = decide(alice, ruled.link("alice", "Reject"), "sre agrees", action="approve")
    assert approved.status_code == 200 and f"Release #{ruled.id} waits for more approvals" in approved.text
    assert link_use(app, ruled.id, "alice") == {"approve": True, "reject": True}
    before = snapshot(app)
    for label in ("Approve", "Reject"):
        page = alice.get(ruled.link("alice", label))
        assert page.status_code == 409 and 'data-refusal="used"' in page.text
        for action in ("approve", "reject"):
            posted = decide(alice, ruled.link("alice", label), "again", action=action)
            assert posted.status_code == 409 and "Nothing was changed" in posted.text
        assert "This link was already used on" in page.text
    assert snapshot(app) == before
    release = api("member").get(f"/api/v1/releases/{ruled.id}").json
    assert release["state"] == "PENDING_APPROVAL" and [d["by"] for d in release["decisions"]] == ["alice"]
    assert decide(web("bob"), ruled.link("bob", "Reject"), "no", action="reject").status_code == 200


def test_once_one_link_decided_both_links_are_refused(app, web, mailed):
    approver = web("approver")
    assert decide(approver, mailed.link("approver", "Reject"), "no", action="reject").status_code == 200
    before = snapshot(app)
    for label in ("Approve", "Reject"):
        for action in ("approve", "reject"):
            posted = decide(approver, mailed.link("approver", label), action=action)
            assert posted.status_code == 409 and "Nothing was changed" in posted.text
    assert snapshot(app) == before


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_the_other_action_is_refused_for_someone_it_was_not_sent_to(app, web, mailed, action):
    before = snapshot(app)
    for who, status in (("admin", 403), ("member", 403)):  # admin may approve; member may not at all
        posted = decide(web(who), mailed.link("approver", "Reject" if action == "approve" else "Approve"),
                        action=action)
        assert posted.status_code == status
    assert snapshot(app) == before


def test_the_other_action_is_refused_to_an_addressee_who_lost_the_permission(app, web, mailed):
    from webapp.extensions import db
    from webapp.models import Grant, User

    with app.app_context():
        user_id = db.session.scalar(sa.select(User.id).where(User.username == "approver"))
        db.session.execute(sa.delete(Grant).where(Grant.user_id == user_id, Grant.permission == "approve_release"))
        db.session.commit()
    assert_refused(app, web("approver"), mailed.link("approver"), "not_allowed", 403, "no longer hold",
                   action="reject")
    assert_refused(app, web("approver"), mailed.link("approver", "Reject"), "not_allowed", 403, "no longer hold",
                   action="approve")


def test_the_links_of_an_earlier_wait_are_refused_when_the_release_waits_again(app, api, web, people, mailed,
                                                                              run_jobs, run_notify_jobs,
                                                                              smtp_server):
    """An emergency release sends the pending one back to the queue; its hook runs again and it
    waits again, with new mail: the first mail's links stay refused, whichever button."""
    from webapp.extensions import db
    from webapp.models import Environment

    old_approve, old_reject = mailed.link("approver"), mailed.link("approver", "Reject")
    assert api("admin").patch("/api/v1/projects/svc/environments/env",
                              json={"allow_break_glass": True}).status_code == 200
    with app.app_context():
        env = db.session.scalar(sa.select(Environment).where(Environment.name == "env"))
        people.add("oncall", "trigger_release", "break_glass", environment=env)
    response = api("oncall").post("/api/v1/projects/svc/environments/env/releases",
                                  json={"resources": [], "break_glass": {"reason": "the site is down"}})
    assert response.status_code == 202, response.json
    assert api("member").get(f"/api/v1/releases/{mailed.id}").json["state"] == "QUEUED"
    run_jobs()
    assert api("member").get(f"/api/v1/releases/{mailed.id}").json["state"] == "PENDING_APPROVAL"
    run_notify_jobs()
    requests = [m for m in smtp_server.inbox.to("approver@example.com") if "needs your approval" in m["Subject"]]
    assert len(requests) == 2
    approver = web("approver")
    for link in (old_approve, old_reject):
        for action in ("approve", "reject"):
            assert_refused(app, approver, link, "revoked", 410, "went back to the queue", action=action)
    new_reject = path(links(requests[1])["Reject"])
    assert decide(approver, new_reject, "now", action="approve").status_code == 200
    assert api("member").get(f"/api/v1/releases/{mailed.id}").json["state"] == "APPROVED"


@pytest.mark.parametrize("action", ["", "APPROVE", "delete", "approve "])
def test_a_post_with_an_unknown_action_is_a_bad_request_and_changes_nothing(app, api, web, mailed, action):
    approver = web("approver")
    before = snapshot(app)
    posted = decide(approver, mailed.link("approver"), "hmm", action=action)
    assert posted.status_code == 400
    assert "did not say whether to approve or reject, so nothing was changed" in posted.text
    assert snapshot(app) == before
    assert decide(approver, mailed.link("approver"), action="approve").status_code == 200  # the link still works


def test_a_post_without_an_action_from_a_page_rendered_before_the_two_buttons_means_the_links_own(api, web, mailed):
    approver = web("approver")
    response = approver.post(mailed.link("approver", "Reject"), data={"csrf_token": approver.csrf, "comment": "x"})
    assert response.status_code == 200
    assert api("member").get(f"/api/v1/releases/{mailed.id}").json["state"] == "REJECTED"


# -- refusals: expired, foreign, decided, permission lost, deactivated -------------------------------

def _set_link(app, link: str, **values) -> None:
    from webapp.extensions import db
    from webapp.models import EmailLink
    from webapp.notify.email_links import token_hash

    with app.app_context():
        db.session.execute(sa.update(EmailLink).where(EmailLink.token_hash == token_hash(link.rsplit("/", 1)[1]))
                           .values(**values))
        db.session.commit()


def assert_refused(app, client, link: str, kind: str, status: int, sentence: str, action: str = "approve") -> None:
    before = snapshot(app)
    page = client.get(link)
    assert page.status_code == status and f'data-refusal="{kind}"' in page.text and sentence in page.text
    posted = decide(client, link, "trying anyway", action=action)
    assert posted.status_code == status, posted.text
    assert snapshot(app) == before


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


# -- approval rules: a link counts for its rules, or says why it would not ------------------------------

@pytest.fixture()
def ruled(app, api, people, new_environment, run_jobs, run_notify_jobs, smtp_server):
    """A release dev triggered on svc/env, whose rules need sre (alice) and dba (bob or carol), mailed."""
    from tests.rules_support import two_rules

    two_rules(app, people, new_environment)
    release_id = trigger(api, "dev")
    run_jobs()
    run_notify_jobs()

    class Ruled:
        id = release_id

        @staticmethod
        def link(who: str, label: str = "Approve") -> str:
            first = smtp_server.inbox.to(f"{who}@example.com")[0]  # the request sent when it began to wait
            return path(links(first)[label])

    return Ruled


def text_of(page: str) -> str:
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_the_confirmation_page_opens_with_the_reason_and_says_what_the_approval_counts_for(web, ruled):
    from tests.rules_support import REASON, WAITING_FOR_BOTH

    page = web("bob").get(ruled.link("bob"))
    assert page.status_code == 200
    shown = text_of(page.text[page.text.index('<section class="card email-confirm">'):])
    assert shown.startswith(f"Why this release needs approval: {REASON} Approve release #{ruled.id} of svc/env?")
    assert f"Approval {WAITING_FOR_BOTH}" in shown
    assert f">Approve release #{ruled.id} as dba</button>" in page.text


def test_two_approve_links_meet_two_rules_one_each(api, web, ruled):
    from tests.rules_support import SRE_MET

    first = decide(web("alice"), ruled.link("alice"), "sre agrees")
    assert first.status_code == 200
    shown = text_of(first.text)
    assert f"Your approval of release #{ruled.id} of svc/env counted for sre." in shown
    assert f"Release #{ruled.id} waits for more approvals" in shown and f"Pending approval : {SRE_MET}." in shown
    assert api("member").get(f"/api/v1/releases/{ruled.id}").json["state"] == "PENDING_APPROVAL"

    second = decide(web("carol"), ruled.link("carol"), "dba agrees")
    assert second.status_code == 200
    release = api("member").get(f"/api/v1/releases/{ruled.id}").json
    assert release["state"] == "APPROVED"
    assert f"Bot release #{release['bot_release_id']} is applying the approved changes." in text_of(second.text)
    assert [(d["by"], d["rules"], d["via"], d["comment"]) for d in release["decisions"]] == [
        ("alice", ["sre"], "email", "sre agrees"), ("carol", ["dba"], "email", "dba agrees")]


def test_a_link_of_someone_whose_approval_no_longer_counts_says_why_and_stays_unused(app, api, web, ruled):
    assert api("alice").post(f"/api/v1/releases/{ruled.id}/approve", json={}).status_code == 200
    assert_refused(app, web("alice"), ruled.link("alice"), "not_counting", 409,
                   "You approved this release already; the rules still unmet need other people.")
    assert api("bob").post(f"/api/v1/releases/{ruled.id}/approve", json={}).status_code == 200  # the last rule
    assert_refused(app, web("carol"), ruled.link("carol"), "decided", 409, "no longer waiting")


def test_a_link_whose_rule_someone_else_met_says_what_is_still_needed(app, api, web, ruled):
    assert api("bob").post(f"/api/v1/releases/{ruled.id}/approve", json={}).status_code == 200
    # carol's link stays unused (assert_refused compares every link's use before and after)
    assert_refused(app, web("carol"), ruled.link("carol"), "not_counting", 409,
                   "Your approval would count for no rule still unmet (sre needs 1 more from group sre)")
    assert api("member").get(f"/api/v1/releases/{ruled.id}").json["state"] == "PENDING_APPROVAL"


def test_links_of_someone_taken_out_of_the_rules_group_no_longer_approve_or_reject(app, web, ruled):
    from webapp.extensions import db
    from webapp.models import Group

    with app.app_context():
        dba = db.session.scalar(sa.select(Group).where(Group.name == "dba"))
        dba.members = [member for member in dba.members if member.username != "carol"]
        db.session.commit()
    carol = web("carol")
    assert_refused(app, carol, ruled.link("carol"), "not_counting", 409, "Your approval would count for no rule")
    assert_refused(app, carol, ruled.link("carol", "Reject"), "not_allowed", 403,
                   "Only someone who could approve for one of its rules may reject this release (members of dba, sre)",
                   action="reject")


@pytest.mark.parametrize(("label", "first"), [("Approve", "approve"), ("Reject", "reject")])
def test_the_links_own_action_comes_first_on_its_page(web, mailed, label, first):
    page = web("approver").get(mailed.link("approver", label)).text
    bar = page[page.index('id="decide-bar"'):]
    assert re.findall(r'<button type="submit" name="action" value="(\w+)"', bar)[:2] == [
        first, "reject" if first == "approve" else "approve"]


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


def test_an_author_is_refused_by_their_link_once_authors_may_not_approve_is_turned_on(
        app, api, web, people, new_environment, run_jobs, run_notify_jobs, smtp_server):
    from tests.helpers import git

    people.add("alice", "approve_release")  # alice@example.com
    repo = new_environment(WAITS)
    first = trigger(api, "dev")
    run_jobs()
    assert api("approver").post(f"/api/v1/releases/{first}/approve", json={}).status_code == 200
    run_jobs()
    (repo / "app.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Change the app", "--author=Alice <alice@example.com>")
    sha = git(repo, "rev-parse", "HEAD")
    second = trigger(api, "dev", ref=sha)
    run_jobs()
    run_notify_jobs()  # mailed to alice too: authors may approve, so far
    [message] = [m for m in smtp_server.inbox.to("alice@example.com") if f"#{second}" in m["Subject"]]
    link = path(links(message)["Approve"])
    settings = api("admin").patch("/api/v1/projects/svc/environments/env", json={"authors_may_not_approve": True})
    assert settings.status_code == 200, settings.json
    assert_refused(app, web("alice"), link, "not_allowed", 403,
                   f"You wrote or committed {sha[:12]} (\u201cChange the app\u201d), which is part of this release")
    assert api("member").get(f"/api/v1/releases/{second}").json["state"] == "PENDING_APPROVAL"
