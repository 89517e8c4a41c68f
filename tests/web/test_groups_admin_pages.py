"""The Groups admin pages: a list with a create form, a page per group with its members, grants,
name and description, and delete; the groups a user is in and what they hold through them."""
from __future__ import annotations

import html

import sqlalchemy as sa

from tests.web.test_admin_pages import (
    WAITS,
    field_error,
    post,
    staff,  # noqa: F401  (a fixture)
    user_id,
)
from tests.web.test_groups import DBA_RULE, group_names, may, set_rules
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, Grant, Group


def group_members(app, name: str) -> list[str]:
    with app.app_context():
        group = db.session.scalar(sa.select(Group).where(Group.name == name))
        return [user.username for user in group.members]


def text_of(page) -> str:
    return html.unescape(page.text)


def test_user_managers_find_groups_on_the_admin_index_and_nobody_else_opens_them(app, staff, web):
    assert "/admin/groups" in web("admin").get("/admin/").text
    assert "/admin/groups" not in web("envmgr").get("/admin/").text
    assert post(web("admin"), "/admin/groups", name="dba").status_code == 302
    for url in ("/admin/groups", "/admin/groups/dba"):
        assert web("admin").get(url).status_code == 200
        for name in ("envmgr", "member"):
            page = web(name).get(url)
            assert page.status_code == 403 and "Manage users" in page.text, (name, url)
        response = app.test_client().get(url)
        assert response.status_code == 302 and "/sign-in" in response.location


def test_the_empty_list_says_what_a_group_is_for_and_a_created_group_opens_its_page(app, staff, web):
    admin = web("admin")
    page = admin.get("/admin/groups")
    assert "No groups yet. Create one below" in page.text
    assert 'name="csrf_token"' in page.text and 'action="/admin/groups#create-group"' in page.text
    response = post(admin, "/admin/groups", name="dba", description="Database people")
    assert response.status_code == 302 and response.location == "/admin/groups/dba"
    page = admin.get(response.location)
    assert "Created the group dba" in page.text and "Database people" in page.text
    assert "No members yet: add people by username below" in page.text
    assert "No grants: members hold only what is granted to them in person." in page.text
    listed = admin.get("/admin/groups").text
    assert 'href="/admin/groups/dba"' in listed and "No groups yet" not in listed
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEvent.via).where(AuditEvent.reason == "group dba created")) == "ui"


def test_a_bad_or_taken_name_is_shown_beside_the_field(app, staff, web):
    admin = web("admin")
    page = post(admin, "/admin/groups", name="Database People", description="x")
    assert page.status_code == 422
    assert "lowercase letters, digits" in html.unescape(field_error(page, "group", "name"))
    assert 'value="Database People"' in page.text  # what was typed stays
    assert post(admin, "/admin/groups", name="dba").status_code == 302
    page = post(admin, "/admin/groups", name="dba")
    assert page.status_code == 409 and "already exists" in field_error(page, "group", "name")
    assert group_names(app) == ["dba"]


def test_members_are_added_by_username_and_removed(app, staff, web):
    admin = web("admin")
    post(admin, "/admin/groups", name="dba")
    page = post(admin, "/admin/groups/dba/members", username="ghost")
    assert page.status_code == 422
    assert "There is no user named ghost" in field_error(page, "member", "username")
    page = post(admin, "/admin/groups/dba/members", username="")
    assert page.status_code == 422 and "Enter the username" in field_error(page, "member", "username")

    response = post(admin, "/admin/groups/dba/members", username=" member ")
    assert response.status_code == 302 and response.location == "/admin/groups/dba#members"
    page = admin.get("/admin/groups/dba")
    assert "Added member to dba." in page.text
    assert f'action="/admin/groups/dba/members/{user_id(app, "member")}/remove"' in page.text
    assert "already" in admin.get(post(admin, "/admin/groups/dba/members", username="member").location).text
    assert group_members(app, "dba") == ["member"]

    assert post(admin, f"/admin/groups/dba/members/{user_id(app, 'member')}/remove").status_code == 302
    assert group_members(app, "dba") == []
    page = post(admin, f"/admin/groups/dba/members/{user_id(app, 'member')}/remove")
    assert page.status_code == 404 and "member is not a member of dba" in page.text


def test_a_grant_to_the_group_is_held_by_its_members_and_revoked_from_them(app, staff, web, new_environment):
    new_environment(WAITS)
    admin = web("admin")
    post(admin, "/admin/groups", name="dba")
    post(admin, "/admin/groups/dba/members", username="member")
    with app.app_context():
        environment_id = db.session.scalar(sa.select(Environment.id).where(Environment.name == "env"))
    page = admin.get("/admin/groups/dba")
    assert f'<option value="{environment_id}">svc/env</option>' in page.text

    page = post(admin, "/admin/groups/dba/grants", permission="manage_users", environment=str(environment_id))
    assert page.status_code == 422 and "exists only for all environments" in html.unescape(
        field_error(page, "grant", "environment"))
    page = post(admin, "/admin/groups/dba/grants", permission="approve_release", environment="999")
    assert page.status_code == 422 and "does not exist any more" in field_error(page, "grant", "environment")
    assert not may(app, "member", "approve_release")

    response = post(admin, "/admin/groups/dba/grants", permission="approve_release", environment=str(environment_id))
    assert response.status_code == 302
    assert "every member holds it now" in text_of(admin.get(response.location))
    assert may(app, "member", "approve_release")
    page = post(admin, "/admin/groups/dba/grants", permission="approve_release", environment=str(environment_id))
    assert page.status_code == 409 and "already holds" in field_error(page, "grant", "permission")

    with app.app_context():
        grant_id = db.session.scalar(sa.select(Grant.id).where(Grant.group_id.is_not(None)))
    assert post(admin, f"/admin/groups/dba/grants/{grant_id}/revoke").status_code == 302
    assert not may(app, "member", "approve_release")


def test_a_user_page_shows_their_groups_and_what_they_hold_through_them(app, staff, web):
    admin = web("admin")
    member = user_id(app, "member")
    page = admin.get(f"/admin/users/{member}")
    assert "Not in any group." in page.text and "No grants: member can read everything" in page.text
    post(admin, "/admin/groups", name="dba")
    post(admin, "/admin/groups/dba/members", username="member")
    assert "Its groups hold no grants." in admin.get(f"/admin/users/{member}").text
    post(admin, "/admin/groups/dba/grants", permission="approve_release", environment="all")

    page = text_of(admin.get(f"/admin/users/{member}"))
    assert 'member is in <a href="/admin/groups/dba">dba</a>.' in page
    assert 'via group <a href="/admin/groups/dba">dba</a>' in page
    assert "No grants in person; what member holds comes from groups" in page
    listed = text_of(admin.get("/admin/users"))
    assert "Release Approval/Reject (all environments) <span class=\"muted\">via group dba</span>" in listed


def test_renaming_on_the_page_moves_the_page_and_the_rules(app, staff, web, new_environment):
    new_environment(WAITS)
    admin = web("admin")
    post(admin, "/admin/groups", name="dba")
    set_rules(app, [DBA_RULE])
    page = admin.get("/admin/groups/dba")
    assert 'href="/projects/svc/environments/env">svc/env</a>' in page.text  # named by its rules

    page = post(admin, "/admin/groups/dba", name="DBA!", description="")
    assert page.status_code == 422 and "lowercase letters" in html.unescape(field_error(page, "edit", "name"))
    response = post(admin, "/admin/groups/dba", name="db-owners", description="Owners of the databases")
    assert response.status_code == 302 and response.location == "/admin/groups/db-owners"
    page = admin.get(response.location)
    assert "Renamed the group dba to db-owners" in page.text and "Owners of the databases" in page.text
    assert admin.get("/admin/groups/dba").status_code == 404
    with app.app_context():
        rules = db.session.scalar(sa.select(Environment.approval_rules))
    assert rules == [{"name": "dba", "group": "db-owners", "approvals": 1}]


def test_delete_asks_first_and_is_refused_while_rules_name_the_group(app, staff, web, new_environment):
    new_environment(WAITS)
    admin = web("admin")
    post(admin, "/admin/groups", name="dba")
    post(admin, "/admin/groups/dba/members", username="member")
    set_rules(app, [DBA_RULE])
    page = admin.get("/admin/groups/dba")
    assert "dba cannot be deleted while approval rules name it" in text_of(page)
    assert 'action="/admin/groups/dba/delete"' not in page.text  # no button that can only fail

    page = post(admin, "/admin/groups/dba/delete")  # the post anyway, as from a page drawn before the rule
    assert page.status_code == 409
    assert "The approval rules of svc/env name the group dba, so it cannot be deleted" in text_of(page)
    response = admin.post("/admin/groups/dba/delete", data={"csrf_token": admin.csrf}, headers={"HX-Request": "true"})
    assert response.status_code == 409 and response.headers["HX-Retarget"] == "#messages"
    assert group_names(app) == ["dba"]

    set_rules(app, [])
    page = admin.get("/admin/groups/dba")
    assert 'hx-confirm="Delete the group dba? Its 1 member(s) lose the group' in text_of(page)
    response = post(admin, "/admin/groups/dba/delete")
    assert response.status_code == 302 and response.location == "/admin/groups"
    assert "Deleted the group dba" in admin.get("/admin/groups").text
    assert group_names(app) == []


def test_a_get_changes_nothing_and_a_post_without_its_csrf_token_is_refused(app, staff, web):
    from tests.web.permission_cases import changed_tables, snapshot

    admin = web("admin")
    post(admin, "/admin/groups", name="dba")
    before = snapshot(app)
    for url in ("/admin/groups", "/admin/groups/dba", "/admin/groups/dba/delete", "/admin/groups/dba/members"):
        admin.get(url)
    response = admin.post("/admin/groups/dba/delete", data={})
    assert response.status_code == 400 and "CSRF" in response.text
    response = admin.post("/admin/groups", data={"name": "sre"})
    assert response.status_code == 400
    assert changed_tables(before, snapshot(app)) == []


def test_in_a_browser_a_group_is_made_filled_emptied_and_deleted_after_asking(app, page_as):
    from playwright.sync_api import expect

    page = page_as("admin")
    page.goto("/admin/")
    page.get_by_role("link", name="Groups").click()
    expect(page.get_by_text("No groups yet.")).to_be_visible()
    page.get_by_label("Name").fill("dba")
    page.get_by_role("button", name="Create group").click()
    expect(page.get_by_role("heading", name="Group dba")).to_be_visible()
    page.get_by_label("Username").fill("member")
    page.get_by_role("button", name="Add member").click()
    expect(page.get_by_role("link", name="member", exact=True)).to_be_visible()

    page.once("dialog", lambda dialog: dialog.dismiss())  # "Remove member from dba?" — no
    page.get_by_role("button", name="Remove member").click()
    expect(page.get_by_role("link", name="member", exact=True)).to_be_visible()
    assert group_members(app, "dba") == ["member"]
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove member").click()
    expect(page.get_by_text("Removed member from dba")).to_be_visible()
    assert group_members(app, "dba") == []

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete group dba").click()
    expect(page.get_by_text("Deleted the group dba")).to_be_visible()
    assert group_names(app) == []
