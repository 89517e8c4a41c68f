"""The admin pages refuse forged and anonymous posts; every user's own API tokens."""
from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from tests.web.test_admin_pages import (
    WAITS,
    anonymous,
    field_error,
    post,
    staff,  # noqa: F401  (a fixture)
    user_id,
)
from webapp.extensions import db
from webapp.models import ApiToken, AuditEvent, Environment, Grant, Project, User, utcnow

# -- forged and anonymous posts ----------------------------------------------------------------

def admin_posts(app) -> list[tuple[str, dict]]:
    """Every kind of admin post, on group dba (dev a member, holding approve_release) when it exists."""
    dev = user_id(app, "dev")
    with app.app_context():
        grant_id = db.session.scalar(sa.select(Grant.id).where(Grant.user_id == dev))
        group_grant_id = db.session.scalar(sa.select(Grant.id).where(Grant.group_id.is_not(None))) or 1
    return [
        ("/admin/users", {"username": "mallory", "email": "m@example.com", "password": "a long enough passphrase",
                          "is_admin": "on"}),
        (f"/admin/users/{dev}/deactivate", {}),
        (f"/admin/users/{dev}/reactivate", {}),
        (f"/admin/users/{dev}/password", {"password": "a long enough passphrase"}),
        (f"/admin/users/{dev}/grants", {"permission": "manage_users", "environment": "all"}),
        (f"/admin/users/{dev}/grants/{grant_id}/revoke", {}),
        ("/admin/projects", {"name": "evil", "repo": "/tmp/x", "branch": "main"}),
        ("/admin/projects/svc", {"repo": "/tmp/evil", "branch": "main", "hook_ref": ""}),
        ("/admin/projects/svc/environments", {"name": "evil", "release_stream": "QA"}),
        ("/admin/groups", {"name": "evil"}),
        ("/admin/groups/dba", {"name": "evil", "description": ""}),
        ("/admin/groups/dba/delete", {}),
        ("/admin/groups/dba/members", {"username": "member"}),
        (f"/admin/groups/dba/members/{dev}/remove", {}),
        ("/admin/groups/dba/grants", {"permission": "manage_users", "environment": "all"}),
        (f"/admin/groups/dba/grants/{group_grant_id}/revoke", {}),
    ]


def make_dba(api) -> None:
    admin = api("admin")
    assert admin.post("/api/v1/groups", json={"name": "dba"}).status_code == 201
    assert admin.put("/api/v1/groups/dba/members/dev").status_code == 201
    assert admin.post("/api/v1/groups/dba/grants", json={"permission": "approve_release"}).status_code == 201


def test_a_member_forging_admin_posts_gets_403_and_nothing_changes(app, staff, web, api, new_environment):
    from tests.web.permission_cases import changed_tables, snapshot

    new_environment(WAITS)
    make_dba(api)
    before = snapshot(app)
    member = web("member")
    for url, data in admin_posts(app):
        response = post(member, url, **data)
        assert response.status_code == 403, url
        assert "ask an admin for a grant" in response.text
    envmgr = web("envmgr")
    for url, data in admin_posts(app):  # managing environments is not managing users or groups
        if "/admin/projects" not in url:
            assert post(envmgr, url, **data).status_code == 403, url
    with app.app_context():
        assert db.session.scalar(sa.select(User.id).where(User.username == "mallory")) is None
        assert db.session.scalar(sa.select(User.active).where(User.username == "dev"))
        assert db.session.scalar(sa.select(Project.repo).where(Project.name == "svc")) != "/tmp/evil"
        assert db.session.scalar(sa.select(sa.func.count(Project.id))) == 1
        assert db.session.scalar(sa.select(sa.func.count(Environment.id))) == 1
        assert db.session.scalar(sa.select(sa.func.count(Grant.id)).where(
            Grant.permission == "manage_users")) == 0
    assert changed_tables(before, snapshot(app)) == []


def test_an_anonymous_post_is_sent_to_sign_in(app, staff, new_environment):
    new_environment(WAITS)
    client = anonymous(app)
    for url, data in [*admin_posts(app), ("/admin/tokens", {"name": "x"}), ("/admin/tokens/1/revoke", {})]:
        response = post(client, url, **data)
        assert response.status_code == 302 and "/sign-in" in response.location, url


# -- API tokens ---------------------------------------------------------------------------------

def created_token(page) -> str:
    return re.search(r'<code id="new-token">([^<]+)</code>', page.text).group(1)


def test_a_new_token_is_shown_once_and_works(app, staff, web):
    member = web("member")
    page = post(member, "/admin/tokens", name="ci deploy", expires_in_days="30")
    assert page.status_code == 201 and "will not be shown again" in page.text
    token = created_token(page)
    response = app.test_client().get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    again = member.get("/admin/tokens")
    assert "ci deploy" in again.text and token[:10] in again.text and token not in again.text
    with app.app_context():
        row = db.session.scalar(sa.select(ApiToken).where(ApiToken.name == "ci deploy"))
        assert row.expires_at is not None and token not in str(row.__dict__)
        assert db.session.scalar(sa.select(AuditEvent).where(
            AuditEvent.reason == "API token 'ci deploy' created for member")) is not None


def token_row(app, name: str) -> ApiToken:
    with app.app_context():
        row = db.session.scalar(sa.select(ApiToken).where(ApiToken.name == name))
        db.session.expunge(row)
        return row


def test_a_new_token_expires_after_90_days_unless_another_choice_is_made(app, staff, web):
    member = web("member")
    page = member.get("/admin/tokens").text
    select = re.search(r'<select id="token-expires_in_days" name="expires_in_days".*?</select>', page, re.S).group(0)
    assert re.findall(r'<option value="(\w+)"', select) == ["7", "30", "90", "180", "365", "never"]
    assert re.search(r'<option value="90" selected>after 90 days \(default\)</option>', select)
    assert "choose “never” only for a program you watch" in page
    before = utcnow()
    for name, days in (("by default", None), ("a week", "7")):
        form = {"name": name} | ({} if days is None else {"expires_in_days": days})
        assert post(member, "/admin/tokens", **form).status_code == 201
        lifetime = token_row(app, name).expires_at - before
        assert timedelta(days=int(days or 90)) <= lifetime < timedelta(days=int(days or 90), minutes=1)


def test_a_token_that_never_expires_is_chosen_explicitly_and_warned_about(app, staff, web):
    page = post(web("member"), "/admin/tokens", name="forever", expires_in_days="never")
    assert page.status_code == 201
    assert "It never expires: revoke it below as soon as it is no longer used." in page.text
    assert token_row(app, "forever").expires_at is None
    assert "It never expires" not in post(web("member"), "/admin/tokens", name="soon").text


def test_an_expired_token_is_refused(app, staff, web):
    member = web("member")
    token = created_token(post(member, "/admin/tokens", name="short", expires_in_days="7"))
    headers = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/projects", headers=headers).status_code == 200
    with app.app_context():  # seven days and a second later
        db.session.execute(sa.update(ApiToken).where(ApiToken.name == "short")
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    response = app.test_client().get("/api/v1/projects", headers=headers)
    assert response.status_code == 401 and "invalid, expired or revoked" in response.json["error"]
    assert "Expired" in member.get("/admin/tokens").text


def test_the_shown_once_token_has_a_copy_button_for_the_static_script(app, staff, web):
    page = post(web("member"), "/admin/tokens", name="copy me").text
    assert '<button type="button" class="button" data-copy="new-token" hidden>Copy</button>' in page
    assert "<script>" not in page and "onclick" not in page  # the script is static/app.js, under script-src 'self'


def test_a_revoked_token_is_refused(app, staff, web):
    member = web("member")
    token = created_token(post(member, "/admin/tokens", name="laptop"))
    with app.app_context():
        token_id = db.session.scalar(sa.select(ApiToken.id).where(ApiToken.name == "laptop"))
    response = post(member, f"/admin/tokens/{token_id}/revoke")
    assert response.status_code == 302 and "Revoked the token" in member.get(response.location).text
    api_response = app.test_client().get("/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
    assert api_response.status_code == 401
    assert post(member, f"/admin/tokens/{token_id}/revoke").status_code == 409


def test_nobody_sees_or_revokes_someone_elses_token(app, staff, web, api):
    with app.app_context():
        dev_token = db.session.scalar(sa.select(ApiToken).join(User).where(User.username == "dev"))
        dev_token_id, dev_prefix = dev_token.id, dev_token.prefix
    for name in ("member", "admin"):
        client = web(name)
        assert dev_prefix not in client.get("/admin/tokens").text
        response = post(client, f"/admin/tokens/{dev_token_id}/revoke")
        assert response.status_code == 404 and "no such API token" in response.text
    assert api("dev").get("/api/v1/projects").status_code == 200


def test_token_form_errors_are_shown_beside_their_fields(app, staff, web):
    page = post(web("member"), "/admin/tokens", name="  ", expires_in_days="soon")
    assert page.status_code == 422
    assert "name of 1–100 characters" in field_error(page, "token", "name")
    assert "whole number of days, or never" in field_error(page, "token", "expires_in_days")
    assert 'id="new-token"' not in page.text
    page = post(web("member"), "/admin/tokens", name="x", expires_in_days="0")
    assert "between 1 and 3650" in field_error(page, "token", "expires_in_days")


def test_the_token_page_needs_a_session(app):
    response = app.test_client().get("/admin/tokens")
    assert response.status_code == 302 and "/sign-in?next=/admin/tokens" in response.location


def test_admin_pages_keep_to_the_content_security_policy(app, staff, web, new_environment):
    new_environment(WAITS)
    admin = web("admin")
    post(admin, "/admin/groups", name="dba")
    post(admin, "/admin/groups/dba/members", username="dev")
    for url in ("/admin/", "/admin/users", f"/admin/users/{user_id(app, 'dev')}", "/admin/projects",
                "/admin/projects/svc", "/admin/tokens", "/admin/groups", "/admin/groups/dba"):
        page = admin.get(url)
        assert page.status_code == 200, url
        assert "<script>" not in page.text and " style=" not in page.text and "hx-on" not in page.text
        assert "onclick" not in page.text and "css/admin.css" in page.text


def test_the_admin_index_links_integrations_for_admins_only(web):
    page = web("admin").get("/admin/").text
    assert "/admin/webhooks" in page and "/admin/mail" in page and "/admin/outbox" in page


def test_the_outbox_warns_when_its_links_point_at_another_address(app, web):
    """Mail links start with BASE_URL; seen from another address, the outbox says so and what to set."""
    admin = web("admin")
    app.config["BASE_URL"] = "http://localhost:5000"
    elsewhere = admin.get("/admin/outbox", base_url="http://localhost:5055")
    assert elsewhere.status_code == 200
    assert "they will not open here" in elsewhere.text and "BASE_URL=http://localhost:5055" in elsewhere.text
    here = admin.get("/admin/outbox", base_url="http://localhost:5000")
    assert here.status_code == 200 and "they will not open here" not in here.text
