"""Test building blocks for the Slack app: requests signed the way Slack signs them, a button
click's payload, a linked Slack user and a release waiting for approval on shop/prod.

Slack itself lies outside this machine: a local HTTP server (pytest-httpserver) stands in for
its Web API (SLACK_API_URL) and for the response_url of a click."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from urllib.parse import urlencode

import sqlalchemy as sa

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-bot-token"
TEAM = "T0TEAM"
REVIEW = "drops the orders table"


def slack_config(app_config: dict, httpserver) -> dict:
    return {**app_config, "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_API_URL": httpserver.url_for("/api"), "SLACK_RESPONSE_URL": httpserver.url_for("/"),
            "BASE_URL": "https://rg.example.com",
            "WEBHOOK_ALLOW_LOCAL": True, "NOTIFY_RETRY_SECONDS": (1,)}


def signed_headers(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's documented signature: v0= + hex HMAC-SHA256 of "v0:{timestamp}:{body}"."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def post_signed(client, path: str, form: dict, *, headers: dict | None = None, **signing):
    body = urlencode(form).encode()
    return client.post(path, data=body, content_type="application/x-www-form-urlencoded",
                       headers=headers if headers is not None else signed_headers(body, **signing))


def click_form(app, release_id: int, action: str, slack_user: str, response_url: str,
               value: str | None = None) -> dict:
    """What Slack POSTs when someone clicks Approve or Reject (a block_actions payload); `value`
    is the button's (default: the release's as drawn now, slack.button_value)."""
    if value is None:
        value = button_value(app, release_id)
    payload = {"type": "block_actions", "team": {"id": TEAM, "domain": "acme"},
               "user": {"id": slack_user, "username": slack_user.lower(), "team_id": TEAM},
               "api_app_id": "A0APP", "token": "legacy-unused", "trigger_id": "1.2.3",
               "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0REL"},
               "channel": {"id": "C0REL", "name": "releases"}, "response_url": response_url,
               "actions": [{"action_id": f"releasegate_{action}", "block_id": f"release-{release_id}",
                            "value": value, "type": "button", "action_ts": "1700000001.000200"}]}
    return {"payload": json.dumps(payload)}


def button_value(app, release_id: int) -> str:
    """The value the release's buttons carry as it waits now."""
    from webapp.extensions import db
    from webapp.models import Release
    from webapp.notify import slack

    with app.app_context():
        release = db.session.get(Release, release_id)
        return slack.button_value(release) if release is not None else str(release_id)


def command_form(text: str, slack_user: str) -> dict:
    """What Slack POSTs for /releasegate <text>."""
    return {"token": "legacy-unused", "team_id": TEAM, "team_domain": "acme", "channel_id": "C0REL",
            "user_id": slack_user, "user_name": slack_user.lower(), "command": "/releasegate", "text": text,
            "response_url": "https://hooks.slack.com/commands/T0TEAM/1/x", "trigger_id": "1.2.3"}


def linking_code(web, who: str) -> str:
    """The one-time code `who`'s own tokens page shows after "Make a linking code"."""
    client = web(who)
    response = client.post("/admin/tokens/slack-code", data={"csrf_token": client.csrf})
    assert response.status_code == 201, response.text
    return re.search(r"/releasegate link ([A-Z0-9]{5}-[A-Z0-9]{5})", response.text).group(1)


def link(app, web, who: str, slack_user: str) -> None:
    code = linking_code(web, who)
    response = post_signed(app.test_client(), "/integrations/slack/commands", command_form(f"link {code}", slack_user))
    assert response.status_code == 200 and response.json["text"].startswith("Linked"), response.json


def pending_release(app, api, who: str = "dev", resources: list | None = None) -> int:
    """A release on shop/prod waiting for approval, as the worker leaves it when the hook exits 2
    with a verdict giving its reason."""
    from tests.helpers import trigger
    from webapp import releases

    release_id = trigger(api, who, path="shop/prod", resources=resources)
    with app.app_context():
        assert releases.record_hook_result(release_id, exit_code=2, output="stub", truncated=False,
                                           verdict=json.dumps({"reason": REVIEW}).encode()) == "PENDING_APPROVAL"
    return release_id


def decisions(app, release_id: int) -> list[tuple[str, str, str]]:
    """(decision, by, via) of a release, oldest first."""
    from webapp.extensions import db
    from webapp.models import Decision, User

    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            sa.select(Decision.decision, User.username, Decision.via).join(User, Decision.user_id == User.id)
            .where(Decision.release_id == release_id).order_by(Decision.id))]
