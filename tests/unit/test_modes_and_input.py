"""Mode switches, idempotent triggers, Terraform plans, approval expiry, and bad input."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import CHANGE, state, trigger
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, Project, Release, Variable, utcnow
from webapp.reconcile import reconcile

HOOK_DIR = "svc/pre_release_hooks"
WAITS = {f"{HOOK_DIR}/pre_release_hook.sh": "exit 2\n"}
ENV_URL = "/api/v1/projects/svc/environments/env"






def counts(app) -> tuple[int, ...]:
    with app.app_context():
        return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(table))
                     for table in (Release, Project, Environment, Variable, AuditEvent))


def test_both_switches_on_is_refused_with_a_sentence_and_by_the_database(app, api, new_environment):
    new_environment(WAITS)
    response = api("admin").patch(ENV_URL, json={"parallel_releases": True})
    assert response.status_code == 409
    assert "exclude each other" in response.json["error"]
    assert api("member").get(ENV_URL).json["parallel_releases"] is False
    response = api("admin").post("/api/v1/projects/svc/environments",
                                 json={"name": "both", "release_stream": "X", "parallel_releases": True})
    assert response.status_code == 409
    with app.app_context(), pytest.raises(sa.exc.IntegrityError):
        db.session.execute(sa.update(Environment).values(parallel_releases=True))
        db.session.commit()


def test_parallel_cannot_be_turned_on_while_a_release_is_pending(api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = trigger(api)
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    response = api("admin").patch(ENV_URL, json={"approval_workflow": False, "parallel_releases": True})
    assert response.status_code == 409 and "waiting for approval" in response.json["error"]


def test_turning_the_workflow_off_never_approves_and_queued_releases_skip_the_hook(api, new_environment, run_jobs):
    new_environment(WAITS, release_command="echo applied")
    first = trigger(api)
    run_jobs()
    second = trigger(api)
    response = api("admin").patch(ENV_URL, json={"approval_workflow": False})
    assert response.status_code == 200 and response.json["mode"] == "serial"
    assert state(api, first) == "PENDING_APPROVAL"
    assert state(api, second) == "QUEUED"
    api("approver").post(f"/api/v1/releases/{first}/reject", json={})
    run_jobs()
    released = api("member").get(f"/api/v1/releases/{second}").json
    assert released["state"] == "SUCCEEDED"
    assert released["hook"]["exit_code"] is None and "applied" in released["execution"]["output"]


def test_parallel_mode_starts_every_queued_release_without_the_slot(app, api, new_environment, run_jobs):
    new_environment(WAITS, approval_workflow=False, release_command="sleep 0.2")
    api("admin").patch(ENV_URL, json={"parallel_releases": True})
    ids = [trigger(api) for _ in range(3)]
    assert [state(api, i) for i in ids] == ["IN_PROGRESS"] * 3
    assert len(api("member").get(ENV_URL).json["active"]) == 3
    run_jobs()
    assert [state(api, i) for i in ids] == ["SUCCEEDED"] * 3
    with app.app_context():
        assert not db.session.scalar(sa.select(sa.func.count(Release.id)).where(Release.holds_slot))


def test_turning_parallel_releases_on_starts_the_releases_already_queued(app, api, new_environment, run_jobs):
    """SPEC §2: the switch itself starts the queue, not the next release to finish."""
    new_environment(WAITS, approval_workflow=False, release_command="sleep 0.2")
    running = trigger(api)
    queued = [trigger(api) for _ in range(3)]
    assert state(api, running) == "IN_PROGRESS" and [state(api, i) for i in queued] == ["QUEUED"] * 3
    response = api("admin").patch(ENV_URL, json={"parallel_releases": True})
    assert response.status_code == 200 and response.json["mode"] == "parallel", response.json
    assert [state(api, i) for i in queued] == ["IN_PROGRESS"] * 3  # before any job has run
    assert len(api("member").get(ENV_URL).json["active"]) == 4
    with app.app_context():
        assert db.session.scalars(sa.select(Release.id).where(Release.holds_slot)).all() == [running]
    run_jobs()
    assert [state(api, i) for i in [running, *queued]] == ["SUCCEEDED"] * 4


def test_settings_changes_are_audited_with_old_and_new_values(app, api, new_environment):
    new_environment(WAITS)
    api("admin").patch(ENV_URL, json={"release_stream": "PROD", "allow_self_approval": True})
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "settings")
                                   .order_by(AuditEvent.id.desc())).first()
        assert event.details["changes"]["release_stream"] == {"old": "QA", "new": "PROD"}
        assert event.details["weakens_gate"] == ["allow_self_approval", "release_stream"]
        assert event.actor.username == "admin"


def test_environment_events_list_settings_changes_newest_first(api, new_environment):
    new_environment(WAITS)
    api("admin").patch(ENV_URL, json={"release_stream": "PROD"})
    api("admin").put(f"{ENV_URL}/variables/REGION", json={"value": "eu"})
    events = api("member").get(f"{ENV_URL}/events").json["items"]
    assert [e["reason"] for e in events] == ["variable REGION created", "settings changed", "environment env created"]
    assert events[1]["details"]["changes"]["release_stream"] == {"old": "QA", "new": "PROD"}
    assert events[1]["by"] == "admin"


def test_idempotency_key_returns_the_first_release(api, new_environment):
    new_environment(WAITS)
    headers = {"Idempotency-Key": "deploy-123"}
    first = api("dev").post(f"{ENV_URL}/releases", json={"resources": CHANGE}, headers=headers)
    again = api("dev").post(f"{ENV_URL}/releases", json={"resources": CHANGE}, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json["id"] == first.json["id"]
    assert len(api("member").get(f"{ENV_URL}/releases").json["items"]) == 1


def test_a_terraform_plan_becomes_resource_changes(api, new_environment):
    new_environment(WAITS)
    actions = {"a": ["create"], "b": ["delete"], "c": ["update"], "d": ["delete", "create"],
               "e": ["create", "delete"], "f": ["no-op"], "g": ["forget"], "h": ["read"]}
    plan = {"format_version": "1.2", "resource_changes": [
        {"address": f"aws_s3_bucket.{name}", "type": "aws_s3_bucket", "name": name, "change": {"actions": acts}}
        for name, acts in actions.items()]}
    release = api("dev").post(f"{ENV_URL}/releases", json={"terraform_plan": plan}).json
    assert [(r["resourceName"], r["changeType"]) for r in release["resources"]] == [
        ("a", "CREATE"), ("b", "DELETE"), ("c", "UPDATE_IN_PLACE"), ("d", "RECREATE"), ("e", "REPLACE"),
        ("f", "NO_OPERATION"), ("g", "NO_OPERATION")]
    assert release["resources"][0]["resourcePath"] == "aws_s3_bucket.a"
    plan["resource_changes"][0]["change"]["actions"] = ["explode"]
    response = api("dev").post(f"{ENV_URL}/releases", json={"terraform_plan": plan})
    assert response.status_code == 422 and "aws_s3_bucket.a" in response.json["error"]


def test_a_pending_release_past_its_approval_timeout_expires(app, api, new_environment, run_jobs):
    new_environment(WAITS, approval_timeout_hours=1)
    first = trigger(api)
    run_jobs()
    second = trigger(api)
    with app.app_context():
        assert reconcile(utcnow() + timedelta(minutes=30))["expired"] == []
        assert reconcile(utcnow() + timedelta(hours=1, seconds=1))["expired"] == [first]
    expired = api("member").get(f"/api/v1/releases/{first}").json
    assert expired["state"] == "REJECTED" and "expired" in expired["error"]
    run_jobs()
    assert state(api, second) == "PENDING_APPROVAL"


BAD_TRIGGERS = [
    ({"resources": [{**CHANGE[0], "changeType": "EXPLODE"}]}, 422, "changeType"),
    ({"resources": [{"resourceType": "t", "resourceName": "n", "resourcePath": "p"}]}, 400, "changeType"),
    ({"resources": [{**CHANGE[0], "resourceName": 7}]}, 400, "resourceName"),
    ({"resources": "everything"}, 400, "resources"),
    ({"resources": CHANGE, "terraform_plan": {"resource_changes": []}}, 400, "terraform_plan"),
    ({}, 400, "resources"),
    ({"resources": CHANGE, "colour": "blue"}, 400, "colour"),
    ([1, 2], 400, "object"),
]


@pytest.mark.parametrize(("body", "status", "named"), BAD_TRIGGERS)
def test_bad_trigger_input_gets_a_sentence_and_writes_nothing(app, api, new_environment, body, status, named):
    new_environment(WAITS)
    before = counts(app)
    response = api("dev").post(f"{ENV_URL}/releases", json=body)
    assert response.status_code == status, response.json
    assert named in response.json["error"]
    assert counts(app) == before


def test_malformed_json_unknown_names_and_bad_slugs_write_nothing(app, api, new_environment):
    new_environment(WAITS)
    before = counts(app)
    response = api("dev").post(f"{ENV_URL}/releases", data="{not json", content_type="application/json")
    assert response.status_code == 400 and "not valid JSON" in response.json["error"]
    response = api("dev").post("/api/v1/projects/nope/environments/env/releases", json={"resources": CHANGE})
    assert response.status_code == 404 and "nope" in response.json["error"]
    response = api("dev").post("/api/v1/projects/svc/environments/nope/releases", json={"resources": CHANGE})
    assert response.status_code == 404 and "svc/nope" in response.json["error"]
    response = api("admin").post("/api/v1/projects", json={"name": "Not A Slug!", "repo": "/tmp/x"})
    assert response.status_code == 422 and "not a valid project name" in response.json["error"]
    response = api("admin").post("/api/v1/projects/svc/environments", json={"name": "Prod", "release_stream": "P"})
    assert response.status_code == 422
    response = api("admin").patch(ENV_URL, json={"hook_timeout_seconds": "soon"})
    assert response.status_code == 400 and "hook_timeout_seconds" in response.json["error"]
    response = api("admin").put(f"{ENV_URL}/variables/PATH", json={"value": "x"})
    assert response.status_code == 422
    response = api("admin").put(f"{ENV_URL}/variables/REGION%0A", json={"value": "x"})  # a name is matched whole
    assert response.status_code == 422 and "not a valid variable name" in response.json["error"]
    assert counts(app) == before


def test_reading_needs_a_token_and_health_does_not(app, api, new_environment):
    client = app.test_client()
    assert client.get(ENV_URL).status_code == 401
    assert client.get(ENV_URL, headers={"Authorization": "Bearer rg_wrong"}).status_code == 401
    health = client.get("/api/v1/health")
    assert health.status_code == 200 and health.json == {"status": "ok"}


def test_session_requests_that_change_state_need_the_csrf_token(app, api, new_environment, monkeypatch):
    from webapp.extensions import login_manager

    new_environment(WAITS)
    monkeypatch.setattr(login_manager, "session_protection", None)  # the session below is hand-made
    client = app.test_client()
    with client.session_transaction() as session, app.app_context():
        from webapp.models import User

        session["_user_id"] = db.session.scalar(sa.select(User.login_id).where(User.username == "dev"))
        session["_fresh"] = True
    assert client.get(ENV_URL).status_code == 200
    response = client.post(f"{ENV_URL}/releases", json={"resources": CHANGE})
    assert response.status_code == 400 and "CSRF" in response.json["error"]


def test_lists_are_paginated_newest_first(api, new_environment):
    new_environment(WAITS, approval_workflow=False)
    ids = [trigger(api) for _ in range(5)]
    page = api("member").get(f"{ENV_URL}/releases?limit=2").json
    assert [r["id"] for r in page["items"]] == ids[::-1][:2]
    second = api("member").get(page["next"]).json
    assert [r["id"] for r in second["items"]] == ids[::-1][2:4]
    assert api("member").get(f"{ENV_URL}/releases?state=BOGUS").status_code == 400
