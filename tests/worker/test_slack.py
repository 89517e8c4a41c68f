"""The Slack app's messages, sent by the notification jobs to a local stand-in for Slack's Web
API (pytest-httpserver at SLACK_API_URL): a release waiting for approval is posted with its
summary and buttons, and the same message is updated once anyone decides, wherever."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.slack_support import (
    REVIEW,
    TOKEN,
    button_value,
    click_form,
    link,
    pending_release,
    post_signed,
    slack_config,
)

CHANNEL_ID, TS = "C0RELEASES", "1700000000.000100"
RESOURCES = [
    {"resourceType": "table", "resourceName": "orders", "resourcePath": "db/orders.sql", "changeType": "DELETE"},
    {"resourceType": "service", "resourceName": "api", "resourcePath": "api.json", "changeType": "CREATE"},
    {"resourceType": "service", "resourceName": "web", "resourcePath": "web.json", "changeType": "CREATE"},
]


@pytest.fixture()
def app_config(app_config, httpserver):
    return slack_config(app_config, httpserver)


@pytest.fixture()
def slack_api(httpserver):
    """Slack's Web API as chat.postMessage and chat.update answer; returns the calls made."""
    answer = {"ok": True, "channel": CHANNEL_ID, "ts": TS}
    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_json(answer)
    httpserver.expect_request("/api/chat.update", method="POST").respond_with_json(answer)
    httpserver.expect_request("/respond", method="POST").respond_with_data("ok")

    def calls(method: str) -> list[dict]:
        made = [request for request, _ in httpserver.log if request.path == f"/api/{method}"]
        for request in made:
            assert request.headers["Authorization"] == f"Bearer {TOKEN}"
            assert request.headers["Content-Type"].startswith("application/json")
        return [json.loads(request.get_data()) for request in made]

    return calls


def add_channel(web, channel: str = "#releases", environment: str = "") -> None:
    admin = web("admin")
    response = admin.post("/admin/slack/channels", data={"channel": channel, "environment": environment,
                                                         "csrf_token": admin.csrf})
    assert response.status_code == 302, response.text


def texts(message: dict) -> str:
    """Every mrkdwn text of a message's blocks, one a line."""
    found = []
    for block in message["blocks"]:
        found += [block["text"]["text"]] if "text" in block else []
        found += [field["text"] for field in block.get("fields", [])]
        found += [element["text"] for element in block.get("elements", []) if isinstance(element.get("text"), str)]
    return "\n".join(found)


def buttons(message: dict) -> list[tuple[str, str, str]]:
    return [(element["action_id"], element["value"], element["text"]["text"])
            for block in message["blocks"] if block["type"] == "actions" for element in block["elements"]]


def test_a_pending_release_is_posted_with_its_summary_and_approve_and_reject_buttons(
        app, api, web, shop, run_notify_jobs, slack_api):
    add_channel(web)
    release_id = pending_release(app, api, resources=RESOURCES)
    run_notify_jobs()

    [posted] = slack_api("chat.postMessage")
    assert posted["channel"] == "#releases"
    assert posted["text"] == f"shop/prod release #{release_id} needs approval"
    shown = texts(posted)
    assert f"*shop/prod* (PROD): <https://rg.example.com/releases/{release_id}|release #{release_id}> needs approval" \
        in shown
    assert "*Triggered by*\ndev" in shown
    assert "1 delete :warning: *destructive*, 2 create" in shown  # destructive first, and marked
    assert f"*Hook:* {REVIEW}" in shown
    drawn_for = button_value(app, release_id)
    assert drawn_for.startswith(f"{release_id}:20")  # the release, and the wait it was drawn for
    assert buttons(posted) == [("releasegate_approve", drawn_for, "Approve"),
                               ("releasegate_reject", drawn_for, "Reject")]
    from webapp.extensions import db
    from webapp.models import SlackMessage

    with app.app_context():  # what chat.update needs later: the channel's id and the ts Slack answered
        message = db.session.scalar(sa.select(SlackMessage))
        assert (message.channel, message.ts, message.status) == (CHANNEL_ID, TS, "sent")


def test_only_the_channels_of_the_releases_environment_are_posted_to(app, api, web, shop, run_notify_jobs,
                                                                     slack_api):
    from webapp.extensions import db
    from webapp.models import Environment

    with app.app_context():
        qa, prod = (db.session.scalar(sa.select(Environment.id).where(Environment.name == name))
                    for name in ("qa", "prod"))
    add_channel(web, "#qa", str(qa))
    add_channel(web, "#prod", str(prod))
    pending_release(app, api)
    run_notify_jobs()
    assert [posted["channel"] for posted in slack_api("chat.postMessage")] == ["#prod"]


def test_a_decision_on_the_release_page_updates_the_message_to_say_who_decided(
        app, api, web, shop, run_notify_jobs, slack_api):
    add_channel(web)
    release_id = pending_release(app, api)
    run_notify_jobs()
    approver = web("approver")
    response = approver.post(f"/releases/{release_id}/approve", data={"comment": "looks fine <!channel>",
                                                                      "csrf_token": approver.csrf})
    assert response.status_code == 303
    run_notify_jobs()

    [updated] = slack_api("chat.update")
    assert (updated["channel"], updated["ts"]) == (CHANNEL_ID, TS)
    # The decider's words as words: no mention of the whole channel, no link in disguise.
    assert (f"release #{release_id}> \u2014 approved by approver (via ui): looks fine &lt;!channel&gt;"
            in texts(updated))
    assert buttons(updated) == []  # nothing left to click
    assert len(slack_api("chat.postMessage")) == 1  # the same message, not a second one


def test_a_decision_from_slack_updates_the_message_too(app, api, web, shop, run_notify_jobs, slack_api,
                                                       httpserver):
    add_channel(web)
    link(app, web, "approver", "U0ANN")
    release_id = pending_release(app, api)
    run_notify_jobs()
    response = post_signed(app.test_client(), "/integrations/slack/interactions",
                           click_form(app, release_id, "reject", "U0ANN", httpserver.url_for("/respond")))
    assert response.status_code == 200 and "You rejected" in response.json["text"]
    run_notify_jobs()
    [updated] = slack_api("chat.update")
    assert "rejected by approver (via slack)" in texts(updated)
    assert buttons(updated) == []


def test_a_message_slack_refuses_is_retried_and_logged(app, api, web, shop, run_notify_jobs, httpserver):
    httpserver.expect_request("/api/chat.postMessage").respond_with_json({"ok": False, "error": "not_in_channel"})
    add_channel(web)
    pending_release(app, api)
    run_notify_jobs()
    from webapp.extensions import db
    from webapp.models import SlackMessage

    with app.app_context():
        message = db.session.scalar(sa.select(SlackMessage))
        assert message.status == "retrying" and message.ts is None
        assert "not_in_channel" in message.last_error
    page = web("admin").get("/admin/slack")
    assert "not_in_channel" in page.text and "#releases" in page.text


def test_the_message_of_a_waiting_release_says_in_one_line_what_changed_since_the_last_release(
        app, api, web, shop, hook_repo, run_jobs, run_notify_jobs, slack_api):
    from tests.helpers import commit_files, trigger

    first = trigger(api, path="shop/prod")
    run_jobs()
    bot = api("approver").post(f"/api/v1/releases/{first}/approve", json={}).json["bot_release_id"]
    run_jobs()
    run_notify_jobs()  # no channel yet: nothing posted
    commit_files(hook_repo, {"notes.txt": "one\ntwo\n"}, "Add <!channel> notes")
    add_channel(web)
    second = trigger(api, path="shop/prod")
    run_jobs()
    run_notify_jobs()
    [posted] = [m for m in slack_api("chat.postMessage") if m["text"] == f"shop/prod release #{second} needs approval"]
    summary = f"Since release #{bot} (deployed just now by dev): 1 commit by Test \u00b7 1 file (+2 \u22120)"
    assert summary == api("member").get(f"/api/v1/releases/{second}").json["since_summary"]
    [what] = [block["elements"] for block in posted["blocks"] if block["type"] == "context"
              and block["elements"][0]["text"] == "*What changed:*"]
    assert what[1] == {"type": "plain_text", "text": summary, "emoji": False}  # authors wrote part of it
