"""Webhooks, received by a real HTTP server (pytest-httpserver): signed bodies, retries
under one delivery id, the delivery log with "redeliver", the Slack format, and the
admin pages (admins only)."""
from __future__ import annotations

import hashlib
import hmac
import threading

import pytest
import sqlalchemy as sa
from werkzeug import Response

from tests.helpers import commit_files, git, trigger, wait_for

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "echo waiting\nexit 2\n"}
SECRET = "a-shared-secret-for-tests"
ALL_EVENTS = ["release.queued", "release.pending_approval", "release.approved", "release.rejected",
              "release.succeeded", "release.failed", "release.cancelled", "environment.updated"]


@pytest.fixture()
def app_config(app_config):
    # The receiver (pytest-httpserver) listens on this machine: local destinations allowed here;
    # the tests of the refusal turn it off.
    return {**app_config, "BASE_URL": "https://rg.example.com", "NOTIFY_RETRY_SECONDS": (1, 1, 1),
            "WEBHOOK_ALLOW_LOCAL": True}


def add_webhook(web, url: str, *, events=("release.pending_approval",), fmt: str = "json", environments=None,
                secret: str = SECRET, name: str = "JIRA"):
    data = {"csrf_token": None, "name": name, "url": url, "secret": secret, "events": list(events),
            "format": fmt, "scope": "all" if environments is None else "some",
            "environments": [str(e) for e in environments or []]}
    admin = web("admin")
    data["csrf_token"] = admin.csrf
    return admin.post("/admin/webhooks", data=data)


def verify(request, secret: str = SECRET) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), request.get_data(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers["X-Releasegate-Signature"])


def deliveries(app) -> list:
    from webapp.extensions import db
    from webapp.models import WebhookDelivery

    with app.app_context():
        rows = db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        db.session.expunge_all()
        return rows


def environment_id(app, name: str = "env") -> int:
    from webapp.extensions import db
    from webapp.models import Environment

    with app.app_context():
        return db.session.scalar(sa.select(Environment.id).where(Environment.name == name))


# -- what is sent -----------------------------------------------------------------------------------

def test_a_pending_release_is_posted_as_signed_json_with_event_and_delivery_id(
        app, api, web, new_environment, run_jobs, run_notify_jobs, httpserver):
    httpserver.expect_request("/jira", method="POST").respond_with_data("ok")
    new_environment(WAITS)
    assert add_webhook(web, httpserver.url_for("/jira")).status_code == 302
    release_id = trigger(api, "dev")
    run_jobs()
    run_notify_jobs()

    [(request, _)] = httpserver.log
    assert verify(request)
    assert not verify(request, "another secret")
    assert request.headers["X-Releasegate-Event"] == "release.pending_approval"
    assert request.headers["Content-Type"] == "application/json"
    [delivery] = deliveries(app)
    assert request.headers["X-Releasegate-Delivery"] == delivery.delivery_id
    body = request.get_json()
    assert body["event"] == "release.pending_approval"
    assert body["release"] == api("member").get(f"/api/v1/releases/{release_id}").json  # as in the API
    assert body["environment"]["name"] == "env" and body["environment"]["release_stream"] == "QA"
    assert "variables" not in body["environment"]
    assert body["project"]["name"] == "svc"
    assert body["links"] == {
        "release": f"https://rg.example.com/releases/{release_id}",
        "environment": "https://rg.example.com/projects/svc/environments/env",
        "api": f"https://rg.example.com/api/v1/releases/{release_id}",
        "approve": f"https://rg.example.com/api/v1/releases/{release_id}/approve",
        "reject": f"https://rg.example.com/api/v1/releases/{release_id}/reject"}
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 1, 200)
    assert delivery.duration_ms is not None


def test_each_subscribed_event_of_a_release_is_posted(api, web, new_environment, run_jobs, run_notify_jobs,
                                                      httpserver):
    httpserver.expect_request("/all").respond_with_data("ok")
    new_environment(WAITS)
    add_webhook(web, httpserver.url_for("/all"), events=ALL_EVENTS)
    release_id = trigger(api, "dev")
    run_jobs()
    api("approver").post(f"/api/v1/releases/{release_id}/approve", json={"comment": "ok"})
    run_jobs()
    second = trigger(api, "dev")
    run_jobs()
    api("dev").post(f"/api/v1/releases/{second}/cancel")
    run_notify_jobs()
    seen = [(r.get_json()["event"], r.get_json()["release"]["id"]) for r, _ in httpserver.log]
    bot_id = release_id + 1
    assert sorted(seen) == sorted([
        ("release.queued", release_id), ("release.pending_approval", release_id), ("release.approved", release_id),
        ("release.succeeded", bot_id), ("release.queued", second), ("release.pending_approval", second),
        ("release.cancelled", second)])


def test_an_endpoint_for_some_environments_hears_only_about_those(app, api, web, new_environment, run_jobs,
                                                                   run_notify_jobs, httpserver):
    httpserver.expect_request("/prod").respond_with_data("ok")
    new_environment(WAITS)
    new_environment(WAITS, name="prod")
    add_webhook(web, httpserver.url_for("/prod"), events=["release.queued"],
                environments=[environment_id(app, "prod")])
    trigger(api, "dev", path="svc/env")
    prod_release = trigger(api, "dev", path="svc/prod")
    run_notify_jobs()
    assert [r.get_json()["release"]["id"] for r, _ in httpserver.log] == [prod_release]


def test_the_slack_format_posts_a_line_a_channel_reads(api, web, new_environment, run_jobs, run_notify_jobs,
                                                       httpserver):
    httpserver.expect_request("/slack").respond_with_data("ok")
    new_environment(WAITS)
    add_webhook(web, httpserver.url_for("/slack"), fmt="slack", name="Slack")
    release_id = trigger(api, "dev", resources=[
        {"resourceType": "db", "resourceName": "old", "resourcePath": "db.json", "changeType": "DELETE"},
        {"resourceType": "svc", "resourceName": "api", "resourcePath": "api.json", "changeType": "CREATE"}])
    run_jobs()
    run_notify_jobs()
    [(request, _)] = httpserver.log
    assert verify(request)
    assert request.get_json() == {"text": (
        f"svc/env release #{release_id} needs approval (triggered by dev; 2 changes, 1 destructive). "
        f"<https://rg.example.com/releases/{release_id}|Open release #{release_id}>\n"
        "First release of this environment: resources: 2 added")}


def test_a_gate_weakening_settings_change_fires_environment_updated(api, web, new_environment, run_notify_jobs,
                                                                    httpserver):
    httpserver.expect_request("/env").respond_with_data("ok")
    new_environment(WAITS)
    add_webhook(web, httpserver.url_for("/env"), events=["environment.updated"])
    api("admin").patch("/api/v1/projects/svc/environments/env", json={"hook_timeout_seconds": 20})
    run_notify_jobs()
    assert httpserver.log == []  # not weaker: no announcement
    api("admin").patch("/api/v1/projects/svc/environments/env", json={"release_stream": "QA2"})
    run_notify_jobs()
    [(request, _)] = httpserver.log
    body = request.get_json()
    assert request.headers["X-Releasegate-Event"] == "environment.updated"
    assert body["event"] == "environment.updated" and body["release"] is None and body["by"] == "admin"
    assert body["changes"] == {"release_stream": {"old": "QA", "new": "QA2"}}
    assert body["weakens_gate"] == ["release_stream"]
    assert body["environment"]["release_stream"] == "QA2"


def test_a_project_change_that_moves_the_gate_fires_environment_updated_for_each_environment_it_moves(
        api, web, new_environment, run_notify_jobs, httpserver):
    httpserver.expect_request("/env").respond_with_data("ok")
    repo = new_environment(WAITS)
    new_environment(WAITS, name="pinned", hook_ref="refs/heads/gate")  # reads its hook from a ref of its own
    add_webhook(web, httpserver.url_for("/env"), events=["environment.updated"])
    admin = web("admin")

    def edit(**values):
        form = {"csrf_token": admin.csrf, "repo": str(repo), "branch": "main", "hook_ref": "", **values}
        assert admin.post("/admin/projects/svc", data=form).status_code == 302

    edit(hook_ref="refs/tags/v1")  # moves the hook of env only: pinned keeps its own hook ref
    run_notify_jobs()
    [(request, _)] = httpserver.log
    body = request.get_json()
    assert request.headers["X-Releasegate-Event"] == "environment.updated"
    assert body["environment"]["name"] == "env" and body["by"] == "admin" and body["release"] is None
    assert body["changes"] == {"project.hook_ref": {"old": None, "new": "refs/tags/v1"}}
    assert body["weakens_gate"] == ["project.hook_ref"]
    assert body["project"]["hook_ref"] == "refs/tags/v1"
    httpserver.clear_log()
    edit(hook_ref="refs/tags/v1", branch="release")  # the code of every environment comes from elsewhere
    run_notify_jobs()
    bodies = sorted((r.get_json() for r, _ in httpserver.log), key=lambda b: b["environment"]["name"])
    assert [b["environment"]["name"] for b in bodies] == ["env", "pinned"]
    assert all(b["changes"] == {"project.branch": {"old": "main", "new": "release"}} for b in bodies)
    httpserver.clear_log()
    moved = repo.parent / "elsewhere.git"
    form = {"csrf_token": admin.csrf, "repo": str(moved), "branch": "release", "hook_ref": "refs/tags/v1"}
    assert admin.post("/admin/projects/svc", data=form).status_code == 302  # the code and the hook come from elsewhere
    run_notify_jobs()
    bodies = sorted((r.get_json() for r, _ in httpserver.log), key=lambda b: b["environment"]["name"])
    assert [b["environment"]["name"] for b in bodies] == ["env", "pinned"]
    assert all(b["changes"] == {"project.repo": {"old": str(repo), "new": str(moved)}} for b in bodies)
    assert all(b["weakens_gate"] == ["project.repo"] for b in bodies)


# -- failures, retries, the log and redeliver ------------------------------------------------------------

def test_a_receiver_that_fails_twice_gets_the_delivery_three_times_with_one_id_and_the_log_shows_it(
        app, api, web, new_environment, start_worker, httpserver, monkeypatch):
    """With the real worker process: its sweep queues the retries once their wait has passed."""
    monkeypatch.setenv("NOTIFY_RETRY_SECONDS", "1,2,4")
    monkeypatch.setenv("WEBHOOK_ALLOW_LOCAL", "1")  # the worker reads its config from the environment
    for status in (500, 503, 200):
        httpserver.expect_ordered_request("/flaky", method="POST").respond_with_data("x", status=status)
    new_environment(WAITS)
    add_webhook(web, httpserver.url_for("/flaky"))
    start_worker()
    trigger(api, "dev")
    wait_for(lambda: len(httpserver.log) == 3, timeout=120)
    ids = {request.headers["X-Releasegate-Delivery"] for request, _ in httpserver.log}
    bodies = {request.get_data() for request, _ in httpserver.log}
    assert len(ids) == 1 and len(bodies) == 1
    assert [request.headers["X-Releasegate-Attempt"] for request, _ in httpserver.log] == ["1", "2", "3"]
    assert all(verify(request) for request, _ in httpserver.log)
    [delivery] = wait_for(lambda: [d for d in deliveries(app) if d.status == "succeeded"], timeout=60)
    assert delivery.attempts == 3 and delivery.response_code == 200
    assert [entry["code"] for entry in delivery.history] == [500, 503, 200]

    admin = web("admin")
    page = admin.get(f"/admin/webhooks/{delivery.endpoint_id}")
    row = page.text.split(f'data-delivery="{delivery.delivery_id}"')[1].split("</tr>")[0]
    assert "succeeded" in row and '<td class="delivery-attempts">3</td>' in row
    detail = admin.get(f"/admin/webhooks/deliveries/{delivery.id}")
    assert detail.status_code == 200
    assert "HTTP 500" in detail.text and "HTTP 503" in detail.text


def test_a_delivery_that_keeps_failing_gives_up_and_redeliver_sends_it_again_with_the_same_id(
        app, api, web, new_environment, run_jobs, run_notify_jobs, httpserver):
    from webapp.extensions import db
    from webapp.models import WebhookDelivery, utcnow
    from webapp.notify import mail

    app.config["NOTIFY_RETRY_SECONDS"] = ()
    httpserver.expect_ordered_request("/down").respond_with_data("nope", status=502)
    httpserver.expect_ordered_request("/down").respond_with_data("ok", status=204)
    new_environment(WAITS)
    add_webhook(web, httpserver.url_for("/down"))
    trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    [delivery] = deliveries(app)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 1, 502)
    assert "HTTP 502" in delivery.last_error and "nope" in delivery.last_error
    with app.app_context():
        assert mail.resume_due()["webhook"] == []  # given up: nothing more on its own

    admin = web("admin")
    page = admin.get(f"/admin/webhooks/{delivery.endpoint_id}")
    assert "failed" in page.text and ">Redeliver</button>" in page.text
    response = admin.post(f"/admin/webhooks/deliveries/{delivery.id}/redeliver", data={"csrf_token": admin.csrf})
    assert response.status_code == 302
    run_notify_jobs()
    [again] = deliveries(app)
    assert (again.status, again.attempts, again.response_code) == ("succeeded", 2, 204)
    assert [r.headers["X-Releasegate-Delivery"] for r, _ in httpserver.log] == [delivery.delivery_id] * 2
    with app.app_context():
        assert db.session.get(WebhookDelivery, delivery.id).next_attempt_at is None
        assert utcnow() >= again.last_attempt_at


def test_a_slow_receiver_times_out_and_is_retried(app, api, web, new_environment, run_jobs, run_notify_jobs,
                                                  httpserver):
    app.config["WEBHOOK_TIMEOUT_SECONDS"] = 1
    answer = threading.Event()  # the receiver answers only once the test has seen the sender give up

    def slow(_request):
        answer.wait(60)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    new_environment(WAITS)
    add_webhook(web, httpserver.url_for("/slow"))
    trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    [delivery] = deliveries(app)
    assert delivery.status == "retrying" and delivery.response_code is None
    assert "timed out" in delivery.last_error
    assert httpserver.log == []  # given up while the receiver still held the request
    answer.set()
    wait_for(lambda: len(httpserver.log) == 1)  # the receiver finishes; nothing spills into the next test


def test_a_redirect_is_not_followed_and_counts_as_a_failure(app, api, web, new_environment, run_jobs,
                                                            run_notify_jobs, httpserver):
    httpserver.expect_request("/moved").respond_with_data("", status=302,
                                                          headers={"Location": httpserver.url_for("/elsewhere")})
    new_environment(WAITS)
    add_webhook(web, httpserver.url_for("/moved"))
    trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    [delivery] = deliveries(app)
    assert (delivery.status, delivery.response_code) == ("retrying", 302)
    assert [r.path for r, _ in httpserver.log] == ["/moved"]


def test_webhooks_never_hold_a_release_up(api, web, new_environment, run_jobs, run_notify_jobs, httpserver):
    httpserver.expect_request("/broken").respond_with_data("down", status=500)
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    add_webhook(web, httpserver.url_for("/broken"), events=ALL_EVENTS)
    release_id = trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    assert api("member").get(f"/api/v1/releases/{release_id}").json["state"] == "SUCCEEDED"


def test_an_unreachable_receiver_is_a_recorded_failure(app, api, web, new_environment, run_jobs, run_notify_jobs):
    from tests.notify_support import free_port

    new_environment(WAITS)
    add_webhook(web, f"http://127.0.0.1:{free_port()}/nobody")
    trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    [delivery] = deliveries(app)
    assert delivery.status == "retrying" and "refused" in delivery.last_error.lower()


def applied(api, repo, run_jobs) -> int:
    """The head of `repo` released, approved and applied: the bot release, what runs there now."""
    first = trigger(api, "dev", ref=git(repo, "rev-parse", "HEAD"))
    run_jobs()
    bot = api("approver").post(f"/api/v1/releases/{first}/approve", json={}).json["bot_release_id"]
    run_jobs()
    return bot


def test_the_slack_line_of_a_waiting_release_says_what_changed_and_its_first_commits(api, web, new_environment,
                                                                                    run_jobs, run_notify_jobs,
                                                                                    httpserver):
    httpserver.expect_request("/slack").respond_with_data("ok")
    repo = new_environment(WAITS)
    bot = applied(api, repo, run_jobs)
    for number in range(4):
        commit_files(repo, {f"f{number}.txt": "x\n"}, f"Step {number} <!channel>")
    add_webhook(web, httpserver.url_for("/slack"), fmt="slack", name="Slack")
    second = trigger(api, "dev", ref=git(repo, "rev-parse", "HEAD"))
    run_jobs()
    run_notify_jobs()
    [text] = [request.get_json()["text"] for request, _ in httpserver.log
              if request.get_json()["text"].startswith(f"svc/env release #{second} needs approval")]
    lines = text.split("\n")
    assert lines[1] == (f"Since release #{bot} (deployed just now by dev): 4 commits by Test \u00b7 "
                        "4 files (+4 \u22120)")
    assert lines[2].endswith("Step 3 &lt;!channel&gt; \u2014 Test")  # a subject never pings a channel
    assert len(lines) == 6 and lines[5] == "\u2026 and 1 more"


def test_the_json_body_of_a_waiting_release_carries_the_summary_of_what_changed(api, web, new_environment,
                                                                               run_jobs, run_notify_jobs,
                                                                               httpserver):
    httpserver.expect_request("/jira").respond_with_data("ok")
    repo = new_environment(WAITS)
    bot = applied(api, repo, run_jobs)
    commit_files(repo, {"a.txt": "a\nb\n"}, "Two lines")
    add_webhook(web, httpserver.url_for("/jira"))
    second = trigger(api, "dev", ref=git(repo, "rev-parse", "HEAD"))
    run_jobs()
    run_notify_jobs()
    [body] = [request.get_json() for request, _ in httpserver.log if request.get_json()["release"]["id"] == second]
    assert body["event"] == "release.pending_approval"
    assert body["since_summary"] == (f"Since release #{bot} (deployed just now by dev): 1 commit by Test \u00b7 "
                                     "1 file (+2 \u22120)")
    assert body["since_summary"] == api("member").get(f"/api/v1/releases/{second}").json["since_summary"]
