"""What Slack sends the app: button clicks (interactions) and the /releasegate command.

Neither has a session or a CSRF token: each request is signed by Slack instead
(X-Slack-Signature over the exact body, SLACK_SIGNING_SECRET), and one that is unsigned,
wrongly signed or over five minutes old is 401 and changes nothing. Signed requests answer
200 with an ephemeral message: Slack shows only whoever acted why it worked or did not.
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs

from flask import Blueprint, Response, current_app, jsonify, request

from ..extensions import csrf
from ..intake.ids import parse_id
from ..notify import slack as messages
from ..notify import slack_links

slack = Blueprint("slack", __name__, url_prefix="/integrations/slack")
csrf.exempt(slack)

HELP = ("`/releasegate link CODE` links your Slack user to your Releasegate user: make the code on your "
        "Releasegate page (your name \u2192 API tokens \u2192 Slack). Then the Approve and Reject buttons of "
        "Releasegate's messages act as you.")


@slack.url_value_preprocessor
def _keep_raw_body(_endpoint, _values) -> None:
    # Runs before the app's before_request checks, which parse the form and would leave no raw
    # body to check the signature against; cached, the form is parsed from the same bytes.
    request.get_data(cache=True)


def _ephemeral(text: str) -> Response:
    return jsonify(response_type="ephemeral", text=text)


def _signed_form() -> dict[str, str] | None:
    """The form fields of a request Slack signed, or None."""
    body = request.get_data(cache=True)
    if not slack_links.signed_by_slack(request.headers.get("X-Slack-Request-Timestamp"),
                                       request.headers.get("X-Slack-Signature"), body):
        return None
    return {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}


def _unsigned() -> tuple[Response, int]:
    return jsonify(error="This request is not signed by Slack with this app's signing secret, or it is older "
                         "than five minutes; nothing was changed."), 401


@slack.post("/interactions")
def interactions():
    form = _signed_form()
    if form is None:
        return _unsigned()
    try:
        payload = json.loads(form.get("payload", ""))
        team_id, slack_user_id = payload["user"].get("team_id") or payload["team"]["id"], payload["user"]["id"]
        [action] = payload["actions"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return _ephemeral("Releasegate did not understand this request from Slack; nothing was changed.")
    if payload.get("type") != "block_actions" or action.get("action_id") not in (messages.APPROVE, messages.REJECT):
        return _ephemeral("Releasegate has no such button; nothing was changed.")
    value = str(action.get("value", ""))
    release_id = parse_id(value.partition(":")[0])
    if release_id is None:
        return _ephemeral("This button names no release; nothing was changed.")
    verb = "approve" if action["action_id"] == messages.APPROVE else "reject"
    reply = slack_links.decide(team_id, slack_user_id, verb, release_id, value)
    body = {"response_type": "ephemeral", "replace_original": False, "text": reply.text}
    response_url = str(payload.get("response_url") or "")
    if response_url.startswith(current_app.config["SLACK_RESPONSE_URL"]):  # Slack's own, as signed
        messages.respond(response_url, body)  # Slack shows a button's answer only this way
    return jsonify(body)


@slack.post("/commands")
def commands():
    form = _signed_form()
    if form is None:
        return _unsigned()
    words = form.get("text", "").split()
    if len(words) == 2 and words[0].lower() == "link":
        team_id, slack_user_id = form.get("team_id", ""), form.get("user_id", "")
        if not team_id or not slack_user_id:
            return _ephemeral("Slack sent no team or user with this command; nothing was linked.")
        return _ephemeral(slack_links.link(team_id, slack_user_id, form.get("user_name", ""), words[1]))
    return _ephemeral(HELP)
