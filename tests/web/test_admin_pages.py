"""Admin pages: users, grants, projects and environments, and each user's own API tokens."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger
from webapp.extensions import db
from webapp.models import ApiToken, AuditEvent, Environment, Grant, Project, User

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "echo asking; exit 2\n"}


@pytest.fixture()
def staff(people):
    """Besides the usual personas: envmgr holds manage_environments for all environments."""
    people.add("envmgr", "manage_environments")
    return people


def user_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(User.id).where(User.username == name))


def post(client, url: str, **data):
    return client.post(url, data={"csrf_token": client.csrf, **data})


def field_error(page, form: str, field: str) -> str:
    """The sentence shown beside one field of one form ('' when there is none)."""
    found = re.search(rf'id="{form}-{field}-error">([^<]*)<', page.text)
    return found.group(1) if found else ""


def anonymous(app):
    client = app.test_client()
    client.csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/sign-in").text).group(1)
    return client


# -- who sees which section -------------------------------------------------------------------

def test_the_admin_index_links_each_person_to_the_sections_they_may_use(app, staff, web):
    page = web("admin").get("/admin/")
    assert page.status_code == 200 and "/admin/users" in page.text and "/admin/projects" in page.text
    page = web("envmgr").get("/admin/")
    assert page.status_code == 200 and "/admin/projects" in page.text and "/admin/users" not in page.text
    page = web("member").get("/admin/")
    assert page.status_code == 403 and "manage users or environments" in page.text
    response = app.test_client().get("/admin/")
    assert response.status_code == 302 and "/sign-in?next=/admin/" in response.location


def test_someone_managing_one_environment_finds_it_on_the_admin_index(app, staff, web, new_environment):
    new_environment(WAITS)
    with app.app_context():
        environment = db.session.scalar(sa.select(Environment).where(Environment.name == "env"))
        staff.add("envowner", "manage_environments", environment=environment)
    page = web("envowner").get("/admin/")
    assert page.status_code == 200 and 'href="/projects/svc/environments/env"' in page.text
    assert "/admin/projects" not in page.text
    assert web("envowner").get("/admin/projects").status_code == 403


@pytest.mark.parametrize("url", ["/admin/users", "/admin/users/1"])
def test_the_user_pages_are_only_for_user_managers(app, staff, web, url):
    assert web("admin").get(url).status_code == 200
    for name in ("envmgr", "member"):
        page = web(name).get(url)
        assert page.status_code == 403 and "Manage users" in page.text
    assert app.test_client().get(url).status_code == 302


def test_the_project_pages_are_only_for_managers_of_all_environments(app, staff, web, new_environment):
    new_environment(WAITS)
    for url in ("/admin/projects", "/admin/projects/svc"):
        assert web("admin").get(url).status_code == 200
        assert web("envmgr").get(url).status_code == 200
        page = web("member").get(url)
        assert page.status_code == 403 and "Manage environments" in page.text
        assert app.test_client().get(url).status_code == 302


def test_a_user_manager_holding_only_manage_users_sees_users_but_not_projects(staff, web):
    staff.add("usermgr", "manage_users")
    page = web("usermgr").get("/admin/")
    assert "/admin/users" in page.text and "/admin/projects" not in page.text
    assert web("usermgr").get("/admin/users").status_code == 200
    assert web("usermgr").get("/admin/projects").status_code == 403


# -- users --------------------------------------------------------------------------------------

def test_the_user_list_shows_admins_status_and_grants_with_their_labels(staff, web):
    page = web("admin").get("/admin/users")
    assert "approver" in page.text and "Every permission (admin)" in page.text
    assert "Release Approval/Reject (all environments)" in page.text
    assert "None: reads only" in page.text  # member


def test_a_created_user_can_sign_in(app, staff, web):
    admin = web("admin")
    response = post(admin, "/admin/users", username="carol", email="carol@example.com",
                    password="a long enough passphrase")
    assert response.status_code == 302
    assert "Created carol" in admin.get(response.location).text
    client = anonymous(app)
    signed_in = post(client, "/sign-in", username="carol", password="a long enough passphrase")
    assert signed_in.status_code == 302 and client.get("/").status_code == 200
    with app.app_context():
        carol = db.session.scalar(sa.select(User).where(User.username == "carol"))
        assert carol.email == "carol@example.com" and not carol.is_admin and carol.active
        assert db.session.scalar(sa.select(AuditEvent).where(AuditEvent.reason == "user carol created")) is not None


def test_creating_a_user_with_bad_input_shows_every_problem_beside_its_field(app, staff, web):
    admin = web("admin")
    page = post(admin, "/admin/users", username="Carol Smith", email="nope", password="short")
    assert page.status_code == 422
    assert "lowercase letters" in field_error(page, "user", "username")
    assert "email address" in field_error(page, "user", "email")
    assert "at least 12 characters" in field_error(page, "user", "password")
    assert 'value="Carol Smith"' in page.text  # what was typed stays, the password does not
    page = post(admin, "/admin/users", username="dev", email="dev2@example.com", password="a long enough passphrase")
    assert page.status_code == 409 and "already exists" in field_error(page, "user", "username")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 5


def test_deactivating_a_user_revokes_their_tokens_and_signs_them_out(app, staff, web, api):
    staff.add("leaver", "trigger_release")
    session = web("leaver")
    assert session.get("/").status_code == 200
    assert api("leaver").get("/api/v1/projects").status_code == 200
    admin = web("admin")
    leaver = user_id(app, "leaver")
    response = post(admin, f"/admin/users/{leaver}/deactivate")
    assert response.status_code == 302
    assert "1 API token(s) revoked" in admin.get(response.location).text
    assert api("leaver").get("/api/v1/projects").status_code == 401
    assert session.get("/").status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(ApiToken.revoked_at).where(ApiToken.user_id == leaver)) is not None
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "user",
                                                              AuditEvent.reason.like("user leaver deactivated%")))
        assert event.details["tokens_revoked"] == 1 and event.via == "ui"


def test_a_reactivated_user_signs_in_again_but_their_old_tokens_stay_revoked(app, staff, web, api):
    staff.add("leaver")
    admin = web("admin")
    leaver = user_id(app, "leaver")
    post(admin, f"/admin/users/{leaver}/deactivate")
    assert post(admin, f"/admin/users/{leaver}/reactivate").status_code == 302
    assert web("leaver").get("/").status_code == 200
    assert api("leaver").get("/api/v1/projects").status_code == 401


def test_nobody_can_deactivate_themselves(app, staff, web):
    admin = web("admin")
    own = user_id(app, "admin")
    assert "Deactivate admin" not in admin.get(f"/admin/users/{own}").text
    response = post(admin, f"/admin/users/{own}/deactivate")
    assert response.status_code == 403 and "cannot deactivate your own account" in response.text
    with app.app_context():
        assert db.session.get(User, own).active


def test_an_admin_resets_a_password_and_only_the_new_one_works(app, staff, web):
    admin = web("admin")
    dev = user_id(app, "dev")
    page = post(admin, f"/admin/users/{dev}/password", password="too short")
    assert page.status_code == 422 and "at least 12 characters" in field_error(page, "reset", "password")
    assert post(admin, f"/admin/users/{dev}/password", password="brand new passphrase").status_code == 302
    client = anonymous(app)
    assert post(client, "/sign-in", username="dev", password="dev-password-123").status_code == 401
    assert post(client, "/sign-in", username="dev", password="brand new passphrase").status_code == 302
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.reason == "password of dev reset"))
        assert event is not None and "brand new" not in str(event.details)


def test_a_missing_user_is_a_404_with_a_sentence(staff, web):
    page = web("admin").get("/admin/users/999")
    assert page.status_code == 404 and "no such user" in page.text


# -- grants -------------------------------------------------------------------------------------

def test_a_grant_for_one_environment_lets_the_grantee_approve_there(app, staff, web, api, new_environment,
                                                                     run_jobs):
    new_environment(WAITS)
    release_id = trigger(api)
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    assert api("member").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 403
    assert state(api, release_id) == "PENDING_APPROVAL"
    with app.app_context():
        environment_id = db.session.scalar(sa.select(Environment.id).where(Environment.name == "env"))
    member = user_id(app, "member")
    admin = web("admin")
    page = admin.get(f"/admin/users/{member}")
    assert '<option value="approve_release">Release Approval/Reject</option>' in page.text
    assert f'<option value="{environment_id}">svc/env</option>' in page.text
    response = post(admin, f"/admin/users/{member}/grants", permission="approve_release",
                    environment=str(environment_id))
    assert response.status_code == 302
    assert "Release Approval/Reject" in admin.get(response.location).text
    response = api("member").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert response.status_code == 200, response.json
    approved = api("admin").get(f"/api/v1/releases/{release_id}").json
    assert approved["state"] == "APPROVED" and [d["by"] for d in approved["decisions"]] == ["member"]
    assert approved["bot_release_id"] is not None
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "grant",
                                                              AuditEvent.environment_id == environment_id))
        assert event.reason == "approve_release granted to member on svc/env" and event.via == "ui"


def test_a_grant_for_all_environments_takes_effect_and_revoking_it_ends_it(app, staff, web, api, new_environment):
    new_environment(WAITS)
    member = user_id(app, "member")
    admin = web("admin")
    path = "/api/v1/projects/svc/environments/env/releases"
    body = {"resources": [{"resourceType": "s", "resourceName": "a", "resourcePath": "a", "changeType": "CREATE"}]}
    assert api("member").post(path, json=body).status_code == 403
    granted = post(admin, f"/admin/users/{member}/grants", permission="trigger_release", environment="all")
    assert granted.status_code == 302
    assert api("member").post(path, json=body).status_code == 202
    page = post(admin, f"/admin/users/{member}/grants", permission="trigger_release", environment="all")
    assert page.status_code == 409 and "already holds" in field_error(page, "grant", "permission")
    with app.app_context():
        grant_id = db.session.scalar(sa.select(Grant.id).where(Grant.user_id == member))
    assert post(admin, f"/admin/users/{member}/grants/{grant_id}/revoke").status_code == 302
    assert api("member").post(path, json=body).status_code == 403
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.reason == "trigger_release revoked from member on all environments")) is not None


def test_a_grant_without_a_chosen_where_is_refused_with_a_sentence(app, staff, web, new_environment):
    new_environment(WAITS)
    member = user_id(app, "member")
    admin = web("admin")
    page = admin.get(f"/admin/users/{member}").text
    where = re.search(r'<select id="grant-environment" name="environment" required.*?</select>', page, re.S).group(0)
    options = re.findall(r'<option value="([^"]*)"([^>]*)>([^<]*)</option>', where)
    assert options[:2] == [("", "", "Choose where…"), ("all", "", "All environments")]
    assert all("selected" not in attributes for _, attributes, _ in options)  # nothing is preselected
    for scope in ("", None):
        form = {"permission": "approve_release"} | ({} if scope is None else {"environment": scope})
        refused = post(admin, f"/admin/users/{member}/grants", **form)
        assert refused.status_code == 422
        assert field_error(refused, "grant", "environment") == (
            "Choose where the grant holds: all environments, or one environment.")
    post(admin, "/admin/groups", name="dba")  # a group's grant form asks the same
    refused = post(admin, "/admin/groups/dba/grants", permission="approve_release", environment="")
    assert refused.status_code == 422 and "Choose where the grant holds" in field_error(refused, "grant", "environment")
    with app.app_context():
        assert db.session.scalar(sa.select(Grant.id).where(Grant.user_id == member)) is None


def test_manage_users_for_one_environment_is_refused_beside_the_field(app, staff, web, new_environment):
    new_environment(WAITS)
    with app.app_context():
        environment_id = db.session.scalar(sa.select(Environment.id).where(Environment.name == "env"))
    member = user_id(app, "member")
    page = post(web("admin"), f"/admin/users/{member}/grants", permission="manage_users",
                environment=str(environment_id))
    assert page.status_code == 422
    assert "exists only for all environments" in field_error(page, "grant", "environment")
    with app.app_context():
        assert db.session.scalar(sa.select(Grant.id).where(Grant.user_id == member)) is None


# -- projects and environments -----------------------------------------------------------------

def test_an_environment_manager_creates_a_project_and_an_environment(app, staff, web, api, hook_repo):
    envmgr = web("envmgr")
    response = post(envmgr, "/admin/projects", name="shop", repo=str(hook_repo), branch="main", hook_ref="")
    assert response.status_code == 302 and response.location.endswith("/admin/projects/shop")
    response = post(envmgr, "/admin/projects/shop/environments", name="prod", release_stream="PROD",
                    mode="approval", release_command='bash deploy.sh "$1"')
    assert response.status_code == 302
    page = envmgr.get("/admin/projects")
    assert 'href="/projects/shop/environments/prod"' in page.text
    environment = api("member").get("/api/v1/projects/shop/environments/prod").json
    assert environment["release_stream"] == "PROD" and environment["approval_workflow"] is True
    assert environment["release_command"] == 'bash deploy.sh "$1"' and environment["parallel_releases"] is False
    assert api("member").get("/api/v1/projects").json["items"][0]["hook_ref"] is None


def test_the_create_environment_form_offers_one_mode_of_three(app, staff, web, api, new_environment):
    new_environment(WAITS)
    envmgr = web("envmgr")
    page = envmgr.get("/admin/projects/svc").text
    assert re.findall(r'<input type="radio" name="mode" value="(\w+)"', page) == ["approval", "serial", "parallel"]
    assert 'name="mode" value="approval" checked' in page
    assert 'name="approval_workflow"' not in page and 'name="parallel_releases"' not in page
    for name, mode in (("fast", "parallel"), ("plain", "serial")):
        assert post(envmgr, "/admin/projects/svc/environments", name=name, release_stream="QA",
                    mode=mode).status_code == 302
        assert api("member").get(f"/api/v1/projects/svc/environments/{name}").json["mode"] == mode


def test_project_form_errors_are_shown_beside_their_fields(app, staff, web, new_environment):
    new_environment(WAITS)
    envmgr = web("envmgr")
    page = post(envmgr, "/admin/projects", name="Bad Name", repo="", branch="main", hook_ref="")
    assert page.status_code == 422
    assert "not a valid project name" in field_error(page, "project", "name")
    assert "Repository must not be empty" in field_error(page, "project", "repo")
    page = post(envmgr, "/admin/projects", name="svc", repo="/tmp/x", branch="main", hook_ref="")
    assert page.status_code == 409 and "already exists" in field_error(page, "project", "name")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Project.id))) == 1


def test_environment_form_errors_are_shown_beside_their_fields(app, staff, web, new_environment):
    new_environment(WAITS)
    envmgr = web("envmgr")
    page = post(envmgr, "/admin/projects/svc/environments", name="Prod EU", release_stream="")
    assert page.status_code == 422
    assert "not a valid environment name" in field_error(page, "environment", "name")
    assert "Release stream must not be empty" in field_error(page, "environment", "release_stream")
    assert "Choose one mode" in field_error(page, "environment", "mode")  # no mode sent
    page = post(envmgr, "/admin/projects/svc/environments", name="both", release_stream="QA", mode="both")
    assert page.status_code == 422 and "Choose one mode" in field_error(page, "environment", "mode")
    page = post(envmgr, "/admin/projects/svc/environments", name="env", release_stream="QA", mode="serial")
    assert page.status_code == 409 and "already has an environment" in field_error(page, "environment", "name")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Environment.id))) == 1


def test_editing_a_project_is_saved_and_audited_old_to_new(app, staff, web, api, new_environment):
    new_environment(WAITS)
    envmgr = web("envmgr")
    repo = api("member").get("/api/v1/projects").json["items"][0]["repo"]
    page = post(envmgr, "/admin/projects/svc", repo=repo, branch="", hook_ref="")
    assert page.status_code == 422 and "Branch must not be empty" in field_error(page, "edit", "branch")
    response = post(envmgr, "/admin/projects/svc", repo=repo, branch="main", hook_ref="refs/heads/gate")
    assert response.status_code == 302
    assert "changed hook_ref" in envmgr.get(response.location).text
    assert api("member").get("/api/v1/projects").json["items"][0]["hook_ref"] == "refs/heads/gate"
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "project",
                                                            AuditEvent.reason == "project svc changed"))
        assert event.details["changes"] == {"hook_ref": {"old": None, "new": "refs/heads/gate"}}
        assert event.details["weakens_gate"] == ["hook_ref"] and event.actor.username == "envmgr"
