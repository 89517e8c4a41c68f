"""Approve and Reject links, parsed out of mail a real SMTP server received and followed:
GET never changes anything; the POST of the confirmation page decides, once; either link of the
pair approves or rejects, and the pair decides once (issue 16).

Refusals and races are in test_email_link_refusals.py; links under approval rules in
test_email_link_rules.py.
"""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.notify_support import links, path, snapshot
from tests.web.email_link_support import (
    app_config,  # noqa: F401 - a fixture, used by name
    assert_refused,
    decide,
    link_use,
    mailed,  # noqa: F401 - a fixture, used by name
    ruled,  # noqa: F401 - a fixture, used by name
)


def csrf_of(page_text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page_text).group(1)


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


@pytest.mark.parametrize(("label", "first"), [("Approve", "approve"), ("Reject", "reject")])
def test_the_links_own_action_comes_first_on_its_page(web, mailed, label, first):
    page = web("approver").get(mailed.link("approver", label)).text
    bar = page[page.index('id="decide-bar"'):]
    assert re.findall(r'<button type="submit" name="action" value="(\w+)"', bar)[:2] == [
        first, "reject" if first == "approve" else "approve"]

