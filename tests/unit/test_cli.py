"""The command line: users, grants, tokens, projects, environments, triggers and the demo."""
from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import ApiToken, Environment, Grant, Project, Release, User, utcnow


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


def test_tokens_create_expires_after_90_days_or_the_days_given_or_never_with_a_warning(app, people):
    people.add("ann")
    before = utcnow()
    lifetimes = {}
    for label, days in (("default", None), ("week", "7"), ("forever", "never")):
        result = run(app, "tokens", "create", "ann", "--label", label, *(() if days is None else ("--days", days)))
        assert result.exit_code == 0, result.output
        assert result.stdout.strip().startswith("rg_") and len(result.stdout.strip().splitlines()) == 1
        assert ("never expires" in result.stderr) is (days == "never")
        with app.app_context():
            expires_at = db.session.scalar(sa.select(ApiToken.expires_at).where(ApiToken.name == label))
        lifetimes[label] = None if expires_at is None else round((expires_at - before) / timedelta(days=1))
    assert lifetimes == {"default": 90, "week": 7, "forever": None}
    for bad in ("0", "soon"):
        result = run(app, "tokens", "create", "ann", "--days", bad)
        assert result.exit_code != 0 and "--days:" in result.output and "Traceback" not in result.output


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
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 4
        assert db.session.scalar(sa.select(sa.func.count(Project.id))) == 1
        streams = dict(db.session.execute(sa.select(Environment.name, Environment.release_stream)).all())
        assert streams == {"qa": "QA", "prod": "PROD"}
        reviewer = db.session.scalar(sa.select(User).where(User.username == "reviewer"))
        assert [g.permission for g in reviewer.grants] == ["approve_release"]


def test_the_demo_asks_a_dba_when_a_database_is_dropped(app, run_jobs):
    assert run(app, "demo").exit_code == 0
    client = app.test_client()
    headers = {name: {"Authorization": f"Bearer {run(app, 'tokens', 'create', name).output.strip()}"}
               for name in ("admin", "reviewer", "dba")}
    drop = {"resourceType": "postgres", "resourceName": "orders", "resourcePath": "db/orders.json",
            "changeType": "DELETE"}
    response = client.post("/api/v1/projects/shop/environments/qa/releases", json={"resources": [drop]},
                           headers=headers["admin"])
    assert response.status_code == 202
    release_id = response.json["id"]
    run_jobs()
    with app.app_context():
        release = db.session.get(Release, release_id)
        assert release.state == "PENDING_APPROVAL", release.error
        assert release.approval_reason == "Drops the database orders: a DBA must look"
    approve = f"/api/v1/releases/{release_id}/approve"
    assert client.post(approve, json={}, headers=headers["reviewer"]).status_code == 200
    with app.app_context():
        assert db.session.get(Release, release_id).state == "PENDING_APPROVAL"  # the default rule only
    assert client.post(approve, json={}, headers=headers["dba"]).status_code == 200
    with app.app_context():
        assert db.session.get(Release, release_id).state == "APPROVED"


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


def test_groups_are_set_up_from_the_command_line(app, tmp_path):
    from webapp.models import AuditEvent, Group
    from webapp.permissions import has_permission

    run(app, "users", "create", "root", "--password", "pw-123456", "--admin")
    run(app, "users", "create", "ann", "--password", "pw-123456")
    run(app, "projects", "create", "shop", "--repo", str(tmp_path))
    run(app, "environments", "create", "shop/prod", "--stream", "PROD")
    assert run(app, "groups", "list").output == "No groups yet; create one with `groups create NAME`.\n"
    result = run(app, "groups", "create", "dba", "--description", "Database people")
    assert result.exit_code == 0 and result.output == "Created group dba.\n"
    assert run(app, "groups", "add", "dba", "ann").output == "Added ann to dba.\n"
    assert run(app, "groups", "add", "dba", "ann").output == "ann is in dba already.\n"
    result = run(app, "groups", "grant", "dba", "approve_release", "--environment", "shop/prod")
    assert result.exit_code == 0 and result.output == "Granted approve_release to group dba on shop/prod.\n"
    assert run(app, "groups", "list").output == "dba: ann; approve_release on shop/prod\n"

    def ann_approves() -> bool:
        with app.app_context():
            ann = db.session.scalar(sa.select(User).where(User.username == "ann"))
            return has_permission(ann, "approve_release", db.session.scalar(sa.select(Environment)))

    assert ann_approves()
    assert run(app, "groups", "remove", "dba", "ann").output == "Removed ann from dba.\n"
    assert not ann_approves()
    run(app, "groups", "add", "dba", "ann")
    result = run(app, "groups", "revoke", "dba", "approve_release", "--environment", "shop/prod")
    assert result.exit_code == 0 and result.output == "Revoked approve_release from group dba on shop/prod.\n"
    assert not ann_approves()

    assert run(app, "groups", "rename", "dba", "db-owners").exit_code == 0
    assert run(app, "groups", "delete", "db-owners").output == "Deleted group db-owners.\n"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Group.id))) == 0
        events = db.session.execute(sa.select(AuditEvent.reason, AuditEvent.via, AuditEvent.actor_id)
                                    .where(AuditEvent.action.in_(("group", "grant"))).order_by(AuditEvent.id)).all()
        root = db.session.scalar(sa.select(User.id).where(User.username == "root"))
    assert [(reason, via) for reason, via, _ in events] == [
        ("group dba created", "cli"), ("ann added to group dba", "cli"),
        ("approve_release granted to group dba on shop/prod", "cli"), ("ann removed from group dba", "cli"),
        ("ann added to group dba", "cli"), ("approve_release revoked from group dba on shop/prod", "cli"),
        ("group dba renamed to db-owners", "cli"),
        ("group db-owners deleted with 1 membership(s) and 0 grant(s); 0 email link(s) revoked", "cli")]
    assert {actor for _, _, actor in events} == {root}  # the machine acts as the first admin


def test_group_mistakes_on_the_command_line_get_a_sentence(app, tmp_path):
    run(app, "users", "create", "ann", "--password", "pw-123456")
    run(app, "projects", "create", "shop", "--repo", str(tmp_path))
    run(app, "environments", "create", "shop/prod", "--stream", "PROD")
    run(app, "groups", "create", "dba")
    for args, says in [
        (("groups", "create", "Bad Name"), "Use 1–63 lowercase letters, digits"),
        (("groups", "create", "dba"), "A group named dba already exists"),
        (("groups", "add", "ghost", "ann"), "There is no group named ghost"),
        (("groups", "add", "dba", "nobody"), "There is no user named nobody"),
        (("groups", "remove", "dba", "ann"), "ann is not a member of dba"),
        (("groups", "grant", "dba", "manage_users", "--environment", "shop/prod"), "exists only for all environments"),
        (("groups", "grant", "dba", "approve_release", "--environment", "shop/nope"), "There is no environment"),
        (("groups", "revoke", "dba", "approve_release"), "does not hold approve_release on all environments"),
        (("groups", "rename", "dba", "Nope!"), "lowercase letters"),
    ]:
        result = run(app, *args)
        assert result.exit_code != 0 and says in result.output, (args, result.output)
        assert "Traceback" not in result.output
    with app.app_context():
        environment = db.session.scalar(sa.select(Environment))
        environment.approval_rules = [{"name": "dba", "group": "dba", "approvals": 1}]
        db.session.commit()
    result = run(app, "groups", "delete", "dba")
    assert result.exit_code != 0 and "The approval rules of shop/prod name the group dba" in result.output


def test_windows_and_an_emergency_release_from_the_command_line(app, hook_repo, tmp_path, run_jobs):
    """A project's change windows (so nothing starts on a Sunday morning), an environment that
    allows emergency releases, and one triggered with --break-glass: it starts at once."""
    assert run(app, "users", "create", "ann", "--password", "pw-123456").exit_code == 0
    run(app, "projects", "create", "shop", "--repo", str(hook_repo))
    never = [{"days": ["sun"], "start": "00:00", "end": "00:01", "tz": "UTC"}]
    result = run(app, "projects", "update", "shop", "--settings", json.dumps({"change_windows": never}))
    assert result.exit_code == 0 and "Updated shop: change_windows." in result.output, result.output
    result = run(app, "projects", "update", "shop", "--settings", json.dumps({"change_windows": [{"days": ["moon"]}]}))
    assert result.exit_code != 0 and "change_windows[0] must be an object with days" in result.output
    run(app, "environments", "create", "shop/prod", "--stream", "PROD",
        "--settings", json.dumps({"approval_workflow": False, "allow_break_glass": True}))
    for permission in ("trigger_release", "break_glass"):
        assert run(app, "users", "grant", "ann", permission, "--environment", "shop/prod").exit_code == 0
    resources = tmp_path / "changes.json"
    resources.write_text("[]")
    result = run(app, "releases", "trigger", "shop/prod", "--as", "ann", "--resources", str(resources))
    assert "Triggered release #1 (SCHEDULED)" in result.output, result.output
    result = run(app, "releases", "trigger", "shop/prod", "--as", "ann", "--resources", str(resources),
                 "--break-glass", "short")
    assert result.exit_code != 0 and "needs a reason of 10 to 2,000 characters" in result.output
    result = run(app, "releases", "trigger", "shop/prod", "--as", "ann", "--resources", str(resources),
                 "--break-glass", "checkout is down for everyone")
    assert "Triggered release #2 (IN_PROGRESS)" in result.output, result.output
    with app.app_context():
        assert db.session.get(Release, 2).break_glass_reason == "checkout is down for everyone"
        assert db.session.get(Project, 1).change_windows == never


def test_a_trigger_from_the_command_line_without_the_permission_gets_a_sentence_not_a_traceback(
        app, people, shop, tmp_path):
    resources = tmp_path / "changes.json"
    resources.write_text(json.dumps([{"resourceType": "t", "resourceName": "n", "resourcePath": "p",
                                      "changeType": "CREATE"}]))
    result = run(app, "releases", "trigger", "shop/prod", "--as", "member", "--resources", str(resources))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "You need the \u201cTrigger release\u201d permission on shop/prod" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Release.id))) == 0


def test_an_environments_windows_and_freezes_are_set_from_the_command_line(app, hook_repo, tmp_path):
    """`environments update --settings` with change_windows and freezes: stored as checked, a bad
    one refused with a sentence and nothing changed, and lifting the freeze starts what waited."""
    assert run(app, "users", "create", "ann", "--password", "pw-123456").exit_code == 0
    run(app, "projects", "create", "shop", "--repo", str(hook_repo))
    run(app, "environments", "create", "shop/prod", "--stream", "PROD", "--settings",
        json.dumps({"approval_workflow": False}))
    assert run(app, "users", "grant", "ann", "trigger_release", "--environment", "shop/prod").exit_code == 0
    window = {"days": ["thu", "mon"], "start": "09:00", "end": "16:00", "tz": "Europe/Berlin"}
    freeze = {"from": "2020-01-01T00:00:00Z", "to": "2099-01-01T00:00:00Z", "reason": "a  long freeze"}
    result = run(app, "environments", "update", "shop/prod", "--settings",
                 json.dumps({"change_windows": [window], "freezes": [freeze]}))
    assert result.exit_code == 0 and "Updated shop/prod: change_windows, freezes." in result.output, result.output
    with app.app_context():
        prod = db.session.scalar(sa.select(Environment).where(Environment.name == "prod"))
        assert prod.change_windows == [{**window, "days": ["mon", "thu"]}]
        assert prod.freezes == [{**freeze, "reason": "a long freeze"}]
    for bad, sentence in (({"change_windows": [{**window, "tz": "Mars/Olympus"}]},
                           "change_windows[0]: tz must be a time zone name like Europe/Berlin"),
                          ({"freezes": [{**freeze, "to": "2019-01-01T00:00:00Z"}]},
                           "freezes[0]: from must be before to")):
        result = run(app, "environments", "update", "shop/prod", "--settings", json.dumps(bad))
        assert result.exit_code != 0 and sentence in result.output, result.output
    with app.app_context():
        prod = db.session.scalar(sa.select(Environment).where(Environment.name == "prod"))
        assert prod.change_windows[0]["tz"] == "Europe/Berlin" and prod.freezes[0]["to"] == freeze["to"]
    resources = tmp_path / "changes.json"
    resources.write_text("[]")
    result = run(app, "releases", "trigger", "shop/prod", "--as", "ann", "--resources", str(resources))
    assert "Triggered release #1 (SCHEDULED)" in result.output, result.output
    result = run(app, "environments", "update", "shop/prod", "--settings",
                 json.dumps({"change_windows": [], "freezes": []}))  # always open, no freeze
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.get(Release, 1).state == "IN_PROGRESS"
        prod = db.session.scalar(sa.select(Environment).where(Environment.name == "prod"))
        assert (prod.change_windows, prod.freezes) == ([], [])
