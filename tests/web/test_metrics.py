"""GET /metrics (issue 15): off (404) until METRICS_TOKEN is set, then only for that bearer token,
never for a session or a user's API token; and what it says is what the database and Redis hold,
after real releases run by a real RQ worker."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from rq import SimpleWorker

from tests.helpers import trigger, wait_for
from webapp import create_app
from webapp.extensions import db, redis_connection
from webapp.metrics import REPAIRS
from webapp.models import AuditEvent, OutgoingMail, Release, utcnow
from webapp.reconcile import reconcile

TOKEN = "metrics-token-for-the-tests-0123456789"
QA, PROD = ("shop", "qa"), ("shop", "prod")
ACTIVE = ("QUEUED", "READY", "PENDING_APPROVAL", "SCHEDULED", "IN_PROGRESS")
FINISHED = ("APPROVED", "REJECTED", "CANCELLED", "SUCCEEDED", "FAILED", "TIMED_OUT")


@pytest.fixture()
def app_config(app_config):
    # One attempt per webhook delivery: a refused one is "failed" at once. The receiver is local.
    return {**app_config, "METRICS_TOKEN": TOKEN, "NOTIFY_RETRY_SECONDS": (), "WEBHOOK_ALLOW_LOCAL": True}


def scrape(app) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label pairs: value}} of one authorised scrape."""
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by_environment(samples: dict[tuple, float], **fixed: str) -> dict[tuple, float]:
    """The samples whose labels include `fixed`, keyed by (project, environment, *the other labels)."""
    found = {}
    for labels, value in samples.items():
        labels = dict(labels)
        if all(labels.pop(key, None) == want for key, want in fixed.items()):
            found[(labels.pop("project"), labels.pop("environment"), *labels.values())] = value
    return found


def states(samples: dict[str, dict[tuple, float]], name: str) -> dict[tuple, float]:
    """Non-zero (project, environment, state) counts of `name`."""
    return {key: value for key, value in by_environment(samples[name]).items() if value}


# -- who may read it ---------------------------------------------------------------------------------

def test_metrics_answer_404_while_no_token_is_set(app_config):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    off = create_app({**app_config, "METRICS_TOKEN": ""}).test_client()
    assert off.get("/metrics").status_code == 404
    assert off.get("/metrics", headers=bearer).status_code == 404
    on = create_app(app_config).test_client()  # the setting, and nothing else, is the switch
    assert on.get("/metrics", headers=bearer).status_code == 200


def test_metrics_refuse_a_missing_or_wrong_token_a_session_and_a_users_api_token(app, people, web):
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN[:-1]}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "releasegate_" not in response.text
    assert web("admin").get("/metrics").status_code == 401  # a signed-in admin is not Prometheus
    assert client.get("/metrics", headers=people.headers("admin")).status_code == 401


def test_metrics_need_neither_a_session_nor_a_user(app):
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert "releasegate_workers 0.0" in response.text


def test_a_short_metrics_token_stops_the_app_with_a_sentence(monkeypatch):
    monkeypatch.setenv("METRICS_TOKEN", "guessable")
    with pytest.raises(SystemExit, match="METRICS_TOKEN must be at least 32 characters long"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})


# -- what it says ------------------------------------------------------------------------------------

def test_metrics_say_what_a_scripted_run_of_releases_did(app, api, shop, run_jobs, run_notify_jobs, web,
                                                         httpserver):
    """qa: one release succeeds, one fails. prod: one is approved (its bot release succeeds), one
    waits for approval, one waits in the queue behind it; then the approval timeout expires."""
    from tests.worker.test_webhooks import add_webhook

    httpserver.expect_request("/ok").respond_with_data("ok")
    httpserver.expect_request("/broken").respond_with_data("no", status=500)
    add_webhook(web, httpserver.url_for("/ok"), events=["release.pending_approval"], name="ok")
    add_webhook(web, httpserver.url_for("/broken"), events=["release.failed"], name="broken")
    assert scrape(app)["releasegate_release_outcomes_total"] == {
        (("environment", env), ("project", "shop"), ("state", state)): 0.0
        for env in ("prod", "qa") for state in FINISHED}

    succeeded = trigger(api, path="shop/qa")
    run_jobs()
    api("admin").patch("/api/v1/projects/shop/environments/qa", json={"release_command": "exit 3"})
    failed = trigger(api, path="shop/qa")
    approved = trigger(api, path="shop/prod")
    run_jobs()
    assert api("approver").post(f"/api/v1/releases/{approved}/approve", json={}).status_code == 200
    run_jobs()  # the bot release applies; then the next prod release runs its hook
    pending = trigger(api, path="shop/prod")
    queued = trigger(api, path="shop/prod")
    run_jobs()
    run_notify_jobs()
    with app.app_context():
        found = dict(db.session.execute(sa.select(Release.id, Release.state)).all())
        bot = db.session.scalar(sa.select(Release.id).where(Release.parent_release_id == approved))
        two_hours_ago = utcnow() - timedelta(hours=2)
        db.session.execute(sa.update(Release).where(Release.id == pending).values(pending_since=two_hours_ago))
        db.session.execute(sa.update(Release).where(Release.id == queued).values(created_at=two_hours_ago))
        db.session.commit()
        mails = dict(db.session.execute(sa.select(OutgoingMail.status, sa.func.count()).group_by(
            OutgoingMail.status)).all())
    assert found == {succeeded: "SUCCEEDED", failed: "FAILED", approved: "APPROVED", bot: "SUCCEEDED",
                     pending: "PENDING_APPROVAL", queued: "QUEUED"}

    samples = scrape(app)
    assert states(samples, "releasegate_releases") == {(*PROD, "PENDING_APPROVAL"): 1, (*PROD, "QUEUED"): 1}
    assert set(by_environment(samples["releasegate_releases"])) == {
        (*where, state) for where in (QA, PROD) for state in ACTIVE}
    assert states(samples, "releasegate_release_outcomes_total") == {
        (*QA, "SUCCEEDED"): 1, (*QA, "FAILED"): 1, (*PROD, "APPROVED"): 1, (*PROD, "SUCCEEDED"): 1}
    for name in ("releasegate_oldest_pending_approval_age_seconds", "releasegate_oldest_queued_age_seconds"):
        ages = by_environment(samples[name])
        assert ages[QA] == 0 and 7200 <= ages[PROD] < 7200 + 60, (name, ages)
    # Hooks: two on qa, two on prod (the bot release has none); commands: two on qa, the bot's on prod.
    assert by_environment(samples["releasegate_hook_duration_seconds_count"]) == {QA: 2, PROD: 2}
    assert by_environment(samples["releasegate_release_command_duration_seconds_count"]) == {QA: 2, PROD: 1}
    for name in ("releasegate_hook_duration_seconds", "releasegate_release_command_duration_seconds"):
        assert all(0 < total < 120 for total in by_environment(samples[f"{name}_sum"]).values())
        assert by_environment(samples[f"{name}_bucket"], le="+Inf") == by_environment(samples[f"{name}_count"])
    webhooks = by_environment_free(samples["releasegate_notifications"], channel="webhook")
    assert {status: count for status, count in webhooks.items() if count} == {"succeeded": 2, "failed": 1}
    assert {status: count for status, count in by_environment_free(
        samples["releasegate_notifications"], channel="mail").items() if count} == mails
    assert sum(mails.values()) > 0

    api("admin").patch("/api/v1/projects/shop/environments/prod", json={"approval_timeout_hours": 1})
    with app.app_context():
        assert reconcile()["expired"] == [pending]
    samples = scrape(app)
    assert by_environment_free(samples["releasegate_reconciler_repairs_total"]) == {
        repair: (1 if repair == "expired" else 0) for repair in REPAIRS}
    assert states(samples, "releasegate_release_outcomes_total")[(*PROD, "REJECTED")] == 1


def by_environment_free(samples: dict[tuple, float], **fixed: str) -> dict[str, float]:
    """Samples with one label besides `fixed`, keyed by that label's value."""
    found = {}
    for labels, value in samples.items():
        labels = dict(labels)
        if all(labels.pop(key, None) == want for key, want in fixed.items()):
            [(_, key)] = labels.items()
            found[key] = value
    return found


def test_the_reconcilers_report_has_the_repairs_the_metrics_count(app):
    with app.app_context():
        assert tuple(reconcile()) == REPAIRS


def test_a_hooks_duration_lands_in_its_bucket(app, api, new_environment, run_jobs):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    run_jobs()
    with app.app_context():
        ended = db.session.scalar(sa.select(AuditEvent.created_at).where(
            AuditEvent.release_id == release_id, AuditEvent.from_state == "READY"))
        db.session.execute(sa.update(Release).where(Release.id == release_id)
                           .values(hook_started_at=ended - timedelta(seconds=90)))
        db.session.commit()
    samples = scrape(app)
    buckets = by_environment_free({labels: value for labels, value in samples[
        "releasegate_hook_duration_seconds_bucket"].items()}, project="svc", environment="env")
    assert buckets == {"1.0": 0, "5.0": 0, "15.0": 0, "30.0": 0, "60.0": 0, "120.0": 1, "300.0": 1, "600.0": 1,
                       "1800.0": 1, "+Inf": 1}
    assert by_environment(samples["releasegate_hook_duration_seconds_sum"]) == {("svc", "env"): 90.0}


def test_each_worker_registered_in_redis_has_its_last_heartbeat(app):
    with app.app_context():
        worker = SimpleWorker(["releasegate"], connection=redis_connection(), name="worker-one")
        worker.register_birth()
        worker.heartbeat()
        beat = worker.last_heartbeat.timestamp()
        try:
            samples = scrape(app)
        finally:
            worker.register_death()
    assert samples["releasegate_workers"] == {(): 1.0}
    [(labels, value)] = samples["releasegate_worker_last_heartbeat_timestamp_seconds"].items()
    assert dict(labels)["worker"] == "worker-one" and value == pytest.approx(beat, abs=0.001)
    assert scrape(app)["releasegate_workers"] == {(): 0.0}


def test_a_worker_busy_with_a_long_job_stays_registered_with_a_fresh_heartbeat(app):
    """RQ gives a SimpleWorker's registration a few minutes when a job without a timeout starts,
    and reports nothing more until it ends; the worker's reconciler thread keeps it alive."""
    from worker.__main__ import reconcile_forever

    with app.app_context():
        redis = redis_connection()
        worker = SimpleWorker(["releasegate"], connection=redis, name="busy")
        worker.register_birth()
        redis.expire(worker.key, 1)  # as a job start leaves it, but 1 s instead of 420
        stop = threading.Event()
        thread = threading.Thread(target=reconcile_forever, args=(app, 0.2, stop, worker))
        thread.start()
        expired_at = time.time() + 1  # when the registration above would lapse by itself

        def kept_alive_past_expiry():
            """A scrape after the registration would have lapsed, with a heartbeat newer than that."""
            found = scrape(app)
            beats = found["releasegate_worker_last_heartbeat_timestamp_seconds"].values()
            return found if time.time() > expired_at + 0.5 and max(beats, default=0) > expired_at else None

        try:
            samples = wait_for(kept_alive_past_expiry, timeout=60)
        finally:
            stop.set()
            thread.join(10)
            worker.register_death()
    assert samples["releasegate_workers"] == {(): 1.0}
