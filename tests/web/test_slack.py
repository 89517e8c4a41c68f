"""Approving from Slack: requests Slack signed (and nothing else) reach the state machine, as
the Releasegate user a Slack user linked with a one-time code, under every rule of the other
doors (SPEC §6); the one who clicked is told why, ephemerally, when nothing changed."""
from __future__ import annotations

import json
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from tests.helpers import state
from tests.slack_support import (
    TEAM,
    button_value,
    click_form,
    command_form,
    decisions,
    link,
    linking_code,
    pending_release,
    post_signed,
    signed_headers,
    slack_config,
)

CLICKS, COMMANDS = "/integrations/slack/interactions", "/integrations/slack/commands"


@pytest.fixture()
def app_config(app_config, httpserver):
    return slack_config(app_config, httpserver)


@pytest.fixture()
def respond(httpserver):
    """The click's response_url: what Releasegate tells the clicker lands here."""
    httpserver.expect_request("/respond", method="POST").respond_with_data("ok")
    return httpserver.url_for("/respond")


def replies(httpserver) -> list[dict]:
    return [json.loads(request.get_data()) for request, _ in httpserver.log if request.path == "/respond"]


def click(app, release_id: int, action: str, slack_user: str, respond: str, **signing):
    return post_signed(app.test_client(), CLICKS, click_form(app, release_id, action, slack_user, respond), **signing)


def rows(app) -> dict:
    """What a refused request must leave as it was."""
    from webapp.extensions import db
    from webapp.models import AuditEvent, Decision, Release, SlackLink, SlackLinkCode

    with app.app_context():
        return {"releases": db.session.execute(sa.select(Release.id, Release.state).order_by(Release.id)).all(),
                "decisions": db.session.scalar(sa.select(sa.func.count(Decision.id))),
                "audit": db.session.scalar(sa.select(sa.func.count(AuditEvent.id))),
                "links": db.session.execute(sa.select(SlackLink.slack_user_id, SlackLink.user_id)).all(),
                "codes": db.session.execute(sa.select(SlackLinkCode.id, SlackLinkCode.used_at)).all()}


# -- the signature -----------------------------------------------------------------------------------

def test_a_signed_click_by_a_linked_approver_approves_the_release_via_slack(app, api, web, shop, respond,
                                                                             httpserver):
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    response = click(app, release_id, "approve", "U0ANN", respond)
    assert response.status_code == 200
    assert response.json["response_type"] == "ephemeral"
    assert f"You approved release #{release_id}" in response.json["text"]
    assert state(api, release_id) == "APPROVED"
    assert decisions(app, release_id) == [("APPROVE", "approver", "slack")]
    [reply] = replies(httpserver)  # Slack shows a button's answer only through its response_url
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is False
    assert f"You approved release #{release_id}" in reply["text"]


@pytest.mark.parametrize("secret, skew", [
    ("another-apps-signing-secret", 0),
    (None, -6 * 60),  # older than five minutes: a replay
    (None, 6 * 60),  # from the future, as far
], ids=["wrong secret", "stale", "future"])
def test_a_click_not_signed_with_the_secret_within_five_minutes_is_401_and_changes_nothing(
        app, api, web, shop, respond, httpserver, secret, skew):
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    before = rows(app)
    # The moment is taken now, not when the tests were collected (a run takes minutes).
    signing = {"timestamp": int(time.time()) + skew, **({"secret": secret} if secret else {})}
    response = click(app, release_id, "approve", "U0ANN", respond, **signing)
    assert response.status_code == 401
    assert "not signed by Slack" in response.json["error"]
    assert rows(app) == before
    assert replies(httpserver) == []


@pytest.mark.parametrize("headers", [
    {},
    {"X-Slack-Request-Timestamp": str(int(time.time()))},
    {"X-Slack-Signature": "v0=" + "0" * 64},
    {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=" + "0" * 64},
    {"X-Slack-Request-Timestamp": "\u00b2", "X-Slack-Signature": "v0=" + "0" * 64},
    {"X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=" + "0" * 64},
], ids=["no headers", "no signature", "no timestamp", "timestamp not a number", "a superscript digit",
        "five thousand digits"])
def test_a_click_or_command_without_slacks_headers_is_401_and_changes_nothing(app, api, web, shop, respond,
                                                                             headers):
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    code = linking_code(web, "admin")
    before = rows(app)
    client = app.test_client()
    assert post_signed(client, CLICKS, click_form(app, release_id, "approve", "U0ANN", respond),
                       headers=headers).status_code == 401
    assert post_signed(client, COMMANDS, command_form(f"link {code}", "U0EVE"), headers=headers).status_code == 401
    assert rows(app) == before


def test_a_body_signed_for_another_body_is_401(app, api, web, shop, respond):
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    before = rows(app)
    signed_for_reject = signed_headers(urlencode(click_form(app, release_id, "reject", "U0ANN", respond)).encode())
    response = post_signed(app.test_client(), CLICKS, click_form(app, release_id, "approve", "U0ANN", respond),
                           headers=signed_for_reject)
    assert response.status_code == 401
    assert rows(app) == before


def test_a_replayed_click_within_five_minutes_changes_nothing_twice_and_says_so(app, api, web, shop, respond):
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    form = click_form(app, release_id, "approve", "U0ANN", respond)
    headers = signed_headers(urlencode(form).encode())  # the very same request, sent twice
    first = post_signed(app.test_client(), CLICKS, form, headers=headers)
    assert first.status_code == 200 and "You approved" in first.json["text"]
    after_first = rows(app)
    again = post_signed(app.test_client(), CLICKS, form, headers=headers)
    assert again.status_code == 200
    assert again.json["response_type"] == "ephemeral"
    assert "is approved, so it cannot be approved" in again.json["text"]
    assert "nothing was changed" in again.json["text"]
    assert rows(app) == after_first
    assert decisions(app, release_id) == [("APPROVE", "approver", "slack")]


# -- linking -----------------------------------------------------------------------------------------

def test_a_code_from_the_users_own_page_links_their_slack_user_once(app, web, shop):
    from webapp.extensions import db
    from webapp.models import SlackLink, SlackLinkCode, User

    code = linking_code(web, "approver")
    response = post_signed(app.test_client(), COMMANDS, command_form(f"link {code.lower()}", "U0ANN"))
    assert response.status_code == 200
    assert response.json == {"response_type": "ephemeral",
                             "text": "Linked: in Slack you now act as approver in Releasegate, with approver's "
                                     "permissions."}
    with app.app_context():
        [(team, slack_user, username)] = db.session.execute(
            sa.select(SlackLink.team_id, SlackLink.slack_user_id, User.username).join(User)).all()
        assert (team, slack_user, username) == (TEAM, "U0ANN", "approver")
        stored = db.session.scalar(sa.select(SlackLinkCode.code_hash))
        assert code.replace("-", "") not in stored and code not in stored  # only its hash is kept
    page = web("approver").get("/admin/tokens")
    assert "u0ann" in page.text and "Unlink" in page.text


def test_a_wrong_code_links_nobody(app, web, shop):
    linking_code(web, "approver")
    before = rows(app)
    response = post_signed(app.test_client(), COMMANDS, command_form("link ABCDE-FGHJK", "U0EVE"))
    assert response.status_code == 200 and response.json["response_type"] == "ephemeral"
    assert "not a Releasegate code" in response.json["text"]
    assert rows(app) == before


def test_a_used_code_does_not_link_a_second_slack_user(app, web, shop):
    code = linking_code(web, "approver")
    assert post_signed(app.test_client(), COMMANDS, command_form(f"link {code}", "U0ANN")).json["text"].startswith(
        "Linked")
    before = rows(app)
    response = post_signed(app.test_client(), COMMANDS, command_form(f"link {code}", "U0EVE"))
    assert "used already" in response.json["text"]
    assert rows(app) == before


def test_an_expired_code_links_nobody(app, web, shop):
    from webapp.extensions import db
    from webapp.models import SlackLinkCode, utcnow

    code = linking_code(web, "approver")
    with app.app_context():  # eleven minutes later
        db.session.execute(sa.update(SlackLinkCode).values(expires_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
    before = rows(app)
    response = post_signed(app.test_client(), COMMANDS, command_form(f"link {code}", "U0ANN"))
    assert "expired" in response.json["text"]
    assert rows(app) == before


def test_an_unknown_command_explains_linking(app, shop):
    response = post_signed(app.test_client(), COMMANDS, command_form("", "U0ANN"))
    assert response.status_code == 200 and "/releasegate link CODE" in response.json["text"]


# -- deciding as the linked user -----------------------------------------------------------------------

def test_a_signed_reject_rejects_the_release_via_slack(app, api, web, shop, respond):
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    response = click(app, release_id, "reject", "U0ANN", respond)
    assert response.status_code == 200 and f"You rejected release #{release_id}" in response.json["text"]
    assert state(api, release_id) == "REJECTED"
    assert decisions(app, release_id) == [("REJECT", "approver", "slack")]


def test_the_triggerer_cannot_approve_their_own_release_from_slack(app, api, web, shop, respond, httpserver):
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api, "approver")  # approver may trigger too
    before = rows(app)
    response = click(app, release_id, "approve", "U0ANN", respond)
    assert response.status_code == 200 and response.json["response_type"] == "ephemeral"
    assert "You triggered this release, so someone else must approve" in response.json["text"]
    assert rows(app) == before
    assert "You triggered this release" in replies(httpserver)[0]["text"]


def test_an_unlinked_slack_user_is_told_to_link_and_nothing_changes(app, api, shop, respond):
    release_id = pending_release(app, api)
    before = rows(app)
    response = click(app, release_id, "approve", "U0NOBODY", respond)
    assert response.status_code == 200 and response.json["response_type"] == "ephemeral"
    assert "not linked to a Releasegate user" in response.json["text"]
    assert "/releasegate link CODE" in response.json["text"]
    assert rows(app) == before


def test_a_linked_user_without_approve_release_on_the_environment_is_refused(app, api, web, shop, respond):
    from webapp.accounts import add_grant
    from webapp.extensions import db
    from webapp.models import Environment, User

    with app.app_context():  # member may approve on shop/qa, not on shop/prod
        member = db.session.scalar(sa.select(User).where(User.username == "member"))
        add_grant(member, "approve_release", db.session.scalar(sa.select(Environment).where(Environment.name == "qa")))
    link(app, web, "member", "U0MEM")
    release_id = pending_release(app, api)
    before = rows(app)
    response = click(app, release_id, "approve", "U0MEM", respond)
    assert response.status_code == 200 and response.json["response_type"] == "ephemeral"
    assert "\u201cRelease Approval/Reject\u201d permission on shop/prod" in response.json["text"]
    assert rows(app) == before
    assert state(api, release_id) == "PENDING_APPROVAL"


def test_a_deactivated_users_slack_link_decides_nothing(app, api, web, shop, respond):
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    from webapp.extensions import db
    from webapp.models import User

    with app.app_context():
        approver_id = db.session.scalar(sa.select(User.id).where(User.username == "approver"))
    admin = web("admin")
    assert admin.post(f"/admin/users/{approver_id}/deactivate", data={"csrf_token": admin.csrf}).status_code == 302
    before = rows(app)
    response = click(app, release_id, "approve", "U0ANN", respond)
    assert response.status_code == 200 and "is not linked to a Releasegate user" in response.json["text"]
    assert rows(app) == before
    # Reactivated, the account does not get back a Slack user linked while it was (perhaps) not its owner's.
    assert admin.post(f"/admin/users/{approver_id}/reactivate", data={"csrf_token": admin.csrf}).status_code == 302
    assert "is not linked" in click(app, release_id, "approve", "U0ANN", respond).json["text"]
    assert state(api, release_id) == "PENDING_APPROVAL"


def test_a_button_drawn_for_an_earlier_wait_for_approval_decides_nothing(app, api, web, shop, respond):
    """A release sent back to the queue waits again with what changed compared anew: a button
    (or a replayed click) of the earlier wait must not approve that."""
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    old = button_value(app, release_id)
    from webapp.extensions import db
    from webapp.models import Release

    with app.app_context():  # as _make_way_for_emergency and a second hook run leave it: waiting again
        db.session.get(Release, release_id).pending_since += timedelta(minutes=5)
        db.session.commit()
    before = rows(app)
    response = post_signed(app.test_client(), CLICKS, click_form(app, release_id, "approve", "U0ANN", respond, old))
    assert "This button was drawn before release" in response.json["text"]
    assert rows(app) == before
    assert "You approved" in click(app, release_id, "approve", "U0ANN", respond).json["text"]


def test_an_answer_goes_only_to_slacks_own_response_url(app, api, web, shop, httpserver):
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    elsewhere = httpserver.url_for("/respond").replace("localhost", "127.0.0.1")
    assert not elsewhere.startswith(httpserver.url_for("/"))
    response = click(app, release_id, "reject", "U0ANN", elsewhere)
    assert response.status_code == 200 and state(api, release_id) == "REJECTED"
    assert replies(httpserver) == []  # the decision stands; nothing was sent to the other address


def test_an_author_of_a_commit_since_the_last_release_cannot_approve_it_from_slack(app, api, web, people, shop,
                                                                                  hook_repo, run_jobs, respond):
    from tests.helpers import git, trigger

    people.add("alice", "approve_release")  # alice@example.com
    link(app, web, "alice", "U0ALICE")
    settings = api("admin").patch("/api/v1/projects/shop/environments/prod", json={"authors_may_not_approve": True})
    assert settings.status_code == 200, settings.json
    first = trigger(api, path="shop/prod")
    run_jobs()
    assert api("approver").post(f"/api/v1/releases/{first}/approve", json={}).status_code == 200
    run_jobs()
    (hook_repo / "app.py").write_text("x = 1\n")
    git(hook_repo, "add", "-A")
    git(hook_repo, "commit", "-q", "-m", "Change the app", "--author=Alice <alice@example.com>")
    sha = git(hook_repo, "rev-parse", "HEAD")
    second = trigger(api, path="shop/prod", ref=sha)
    run_jobs()
    assert state(api, second) == "PENDING_APPROVAL"
    before = rows(app)
    response = click(app, second, "approve", "U0ALICE", respond)
    assert response.status_code == 200 and response.json["response_type"] == "ephemeral"
    assert response.json["text"].startswith(f"You wrote or committed {sha[:12]} (\u201cChange the app\u201d), "
                                            "which is part of this release")
    assert response.json["text"].endswith("Nothing was changed.")
    assert rows(app) == before and state(api, second) == "PENDING_APPROVAL"
