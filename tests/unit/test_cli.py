"""The command line: users, grants, tokens, projects, environments, triggers and the demo."""
from __future__ import annotations

import json

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import Environment, Grant, Project, Release, User


def run(app, *args: str):
    result = app.test_cli_runner().invoke(args=list(args))
    return result


def test_a_team_can_be_set_up_and_a_release_triggered_from_the_command_line(app, hook_repo, tmp_path, run_jobs):
    assert run(app, "users", "create", "root", "--email", "r@x", "--password", "pw-123456", "--admin").exit_code == 0
    assert run(app, "users", "create", "ann", "--password", "pw-123456").exit_code == 0
    result = run(app, "projects", "create", "shop", "--repo", str(hook_repo))
    assert result.exit_code == 0, result.output
    result = run(app, "environments", "create", "shop/prod", "--stream", "PROD",
                 "--settings", json.dumps({"approval_timeout_hours": 4}))
    assert result.exit_code == 0, result.output
    assert run(app, "users", "grant", "ann", "trigger_release", "--environment", "shop/prod").exit_code == 0
    token = run(app, "tokens", "create", "ann").output.strip()
    assert token.startswith("rg_") and len(token) > 30
    resources = tmp_path / "changes.json"
    resources.write_text(json.dumps([{"resourceType": "t", "resourceName": "n", "resourcePath": "p",
                                      "changeType": "CREATE"}]))
    result = run(app, "releases", "trigger", "shop/prod", "--as", "ann", "--resources", str(resources))
    assert result.exit_code == 0 and "Triggered release #1" in result.output
    run_jobs()
    with app.app_context():
        assert db.session.get(Release, 1).state == "PENDING_APPROVAL"
        environment = db.session.scalar(sa.select(Environment))
        assert environment.approval_timeout_hours == 4
        grant = db.session.scalar(sa.select(Grant))
        assert (grant.permission, grant.environment_id) == ("trigger_release", environment.id)
    response = app.test_client().get("/api/v1/releases/1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_cli_mistakes_get_a_sentence_not_a_traceback(app, tmp_path):
    result = run(app, "users", "grant", "ghost", "approve_release")
    assert result.exit_code != 0 and "There is no user named ghost" in result.output
    result = run(app, "projects", "create", "Bad Name", "--repo", "/tmp/x")
    assert result.exit_code != 0 and "not a valid project name" in result.output
    run(app, "projects", "create", "shop", "--repo", str(tmp_path))
    result = run(app, "environments", "create", "shop/qa", "--stream", "QA", "--settings", '{"foo": 1}')
    assert result.exit_code != 0 and "Unknown field 'foo'" in result.output
    result = run(app, "environments", "create", "nope/qa", "--stream", "QA")
    assert result.exit_code != 0 and "no project nope" in result.output
    assert "Traceback" not in result.output


def test_demo_is_idempotent_and_prints_logins(app, run_jobs):
    first = run(app, "demo")
    assert first.exit_code == 0, first.output
    assert "admin" in first.output and "reviewer" in first.output and "viewer" in first.output
    assert run(app, "demo").exit_code == 0
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 3
        assert db.session.scalar(sa.select(sa.func.count(Project.id))) == 1
        streams = dict(db.session.execute(sa.select(Environment.name, Environment.release_stream)).all())
        assert streams == {"qa": "QA", "prod": "PROD"}
        reviewer = db.session.scalar(sa.select(User).where(User.username == "reviewer"))
        assert [g.permission for g in reviewer.grants] == ["approve_release"]


def test_a_demo_qa_release_runs_the_demo_release_command(app, run_jobs):
    assert run(app, "demo").exit_code == 0
    token = run(app, "tokens", "create", "admin").output.strip()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    change = {"resourceType": "service", "resourceName": "api", "resourcePath": "svc/api.json",
              "changeType": "UPDATE_IN_PLACE"}
    response = client.post("/api/v1/projects/shop/environments/qa/releases", json={"resources": [change]},
                           headers=headers)
    assert response.status_code == 202
    run_jobs()
    release = client.get(f"/api/v1/releases/{response.json['id']}", headers=headers).json
    assert release["state"] == "SUCCEEDED", release
    assert "UPDATE_IN_PLACE  svc/api.json" in release["execution"]["output"]
