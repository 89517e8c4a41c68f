"""Groups through the API: creating, renaming and deleting them, their members and grants;
a group's grant held by every member while a member; rules that name a group never left
pointing at nothing; email links ended when a member loses the right to decide."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger
from webapp.extensions import db
from webapp.models import AuditEvent, EmailLink, Environment, Group, Release, User

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "echo asking; exit 2\n"}
DBA_RULE = {"name": "dba", "group": "dba", "approvals": 1}
LOST = "the person it was sent to lost the permission to decide it"


@pytest.fixture()
def dba(api):
    """The group dba, created by the admin through the API."""
    response = api("admin").post("/api/v1/groups", json={"name": "dba", "description": "Database people"})
    assert response.status_code == 201, response.json
    return response.json


def set_rules(app, rules: list[dict], environment: str = "env") -> None:
    """An environment's approval rules, written as its settings would write them."""
    with app.app_context():
        found = db.session.scalar(sa.select(Environment).where(Environment.name == environment))
        found.approval_rules = rules
        db.session.commit()


def rules_of(app, environment: str = "env") -> list[dict]:
    with app.app_context():
        return db.session.scalar(sa.select(Environment.approval_rules).where(Environment.name == environment))


def may(app, who: str, permission: str, environment: str = "env") -> bool:
    from webapp.permissions import has_permission

    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == who))
        where = db.session.scalar(sa.select(Environment).where(Environment.name == environment))
        return has_permission(user, permission, where)


def group_names(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Group.name).order_by(Group.name)))


def reasons(app, action: str) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.reason).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.id)))


# -- creating, reading, renaming, deleting ------------------------------------------------------

def test_a_user_manager_creates_reads_renames_and_deletes_a_group(app, api, dba):
    assert dba == {"name": "dba", "description": "Database people", "members": [], "grants": [],
                   "created_at": dba["created_at"]}
    admin = api("admin")
    response = admin.post("/api/v1/groups", json={"name": "sre"})
    assert response.status_code == 201 and response.headers["Location"] == "/api/v1/groups/sre"
    assert response.json["description"] == ""

    listed = api("member").get("/api/v1/groups")  # anyone signed in reads them, to name them in rules
    assert listed.status_code == 200 and [g["name"] for g in listed.json["items"]] == ["sre", "dba"]
    assert listed.json["next"] is None
    assert api("member").get("/api/v1/groups/dba").json["description"] == "Database people"

    response = admin.patch("/api/v1/groups/dba", json={"name": "dbas", "description": "  DB owners "})
    assert response.status_code == 200
    assert (response.json["name"], response.json["description"]) == ("dbas", "DB owners")
    assert admin.get("/api/v1/groups/dba").status_code == 404
    assert admin.patch("/api/v1/groups/dbas", json={}).status_code == 200  # nothing to change

    assert admin.delete("/api/v1/groups/dbas").status_code == 204
    assert admin.get("/api/v1/groups/dbas").status_code == 404
    assert group_names(app) == ["sre"]
    assert reasons(app, "group") == ["group dba created", "group sre created", "group dba renamed to dbas",
                                     "group dbas deleted with 0 membership(s) and 0 grant(s); 0 email link(s) revoked"]


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"name": "DBA"}, 422, "Use 1–63 lowercase letters, digits"),
    ({"name": "-dba"}, 422, "starting with a letter or digit"),
    ({"name": "d" * 64}, 422, "Use 1–63 lowercase letters"),
    ({"name": ""}, 422, "name must not be empty."),
    ({"name": 7}, 400, "name must be a string."),
    ({"description": "no name"}, 400, "name is required to create a group."),
    ({"name": "dba", "members": []}, 400, "Unknown field 'members'"),
    ({"name": "sre", "description": "x" * 1001}, 422, "Use at most 1000 characters"),
    ({"name": "dba"}, 409, "A group named dba already exists; choose another name."),
    ([], 400, "The request body must be a JSON object."),
])
def test_a_bad_group_is_refused_with_a_sentence_and_nothing_written(app, api, dba, body, status, says):
    response = api("admin").post("/api/v1/groups", json=body)
    assert response.status_code == status, response.json
    assert says in response.json["error"] and response.json["error"].endswith(".")
    assert group_names(app) == ["dba"]


def test_renaming_to_a_taken_or_bad_name_is_refused_and_an_unknown_group_is_a_404(app, api, dba):
    admin = api("admin")
    assert admin.post("/api/v1/groups", json={"name": "sre"}).status_code == 201
    response = admin.patch("/api/v1/groups/dba", json={"name": "sre"})
    assert response.status_code == 409 and response.json == {
        "error": "A group named sre already exists; choose another name.", "field": "name"}
    response = admin.patch("/api/v1/groups/dba", json={"name": "Bad Name"})
    assert response.status_code == 422 and response.json["field"] == "name"
    assert group_names(app) == ["dba", "sre"]
    for method in ("get", "patch", "delete"):
        response = getattr(admin, method)("/api/v1/groups/ghost", json={})
        assert response.status_code == 404
        assert response.json["error"].startswith("There is no group named ghost;")


def test_without_manage_users_a_group_is_read_but_never_changed(app, api, dba):
    approver = api("approver")
    attempts = [approver.post("/api/v1/groups", json={"name": "mine"}),
                approver.patch("/api/v1/groups/dba", json={"name": "mine"}),
                approver.delete("/api/v1/groups/dba"),
                approver.put("/api/v1/groups/dba/members/approver"),
                approver.post("/api/v1/groups/dba/grants", json={"permission": "approve_release"})]
    for response in attempts:
        assert response.status_code == 403
        assert "You need the \u201cManage users\u201d permission to do this" in response.json["error"]
    assert approver.get("/api/v1/groups/dba").json["members"] == []
    assert group_names(app) == ["dba"]


# -- members ------------------------------------------------------------------------------------

def test_members_are_put_in_and_taken_out(app, api, dba):
    admin = api("admin")
    response = admin.put("/api/v1/groups/dba/members/member")
    assert response.status_code == 201 and response.json["members"] == ["member"]
    response = admin.put("/api/v1/groups/dba/members/member")  # once is enough
    assert response.status_code == 200 and response.json["members"] == ["member"]
    assert admin.put("/api/v1/groups/dba/members/dev").json["members"] == ["dev", "member"]

    assert admin.delete("/api/v1/groups/dba/members/member").status_code == 204
    response = admin.delete("/api/v1/groups/dba/members/member")
    assert response.status_code == 404
    assert response.json["error"] == "member is not a member of dba; nothing was changed."
    response = admin.put("/api/v1/groups/dba/members/ghost")
    assert response.status_code == 404 and response.json["error"] == "There is no user named ghost."
    response = admin.put("/api/v1/groups/dba/members/dev", json={"role": "lead"})
    assert response.status_code == 400 and "Send no body" in response.json["error"]
    assert admin.get("/api/v1/groups/dba").json["members"] == ["dev"]
    assert reasons(app, "group")[1:] == ["member added to group dba", "dev added to group dba",
                                         "member removed from group dba"]


# -- grants to a group ---------------------------------------------------------------------------

def test_a_group_grant_lets_every_member_approve_and_leaving_the_group_ends_it(app, api, dba, new_environment,
                                                                               run_jobs):
    new_environment(WAITS)
    admin = api("admin")
    response = admin.post("/api/v1/groups/dba/grants", json={"permission": "approve_release",
                                                             "environment": "svc/env"})
    assert response.status_code == 201
    assert response.json["permission"] == "approve_release" and response.json["environment"] == "svc/env"
    first, second = trigger(api), trigger(api)  # dev's; the second waits behind the first
    run_jobs()
    assert state(api, first) == "PENDING_APPROVAL"
    assert not may(app, "member", "approve_release")
    assert api("member").post(f"/api/v1/releases/{first}/approve", json={}).status_code == 403

    assert admin.put("/api/v1/groups/dba/members/member").status_code == 201
    assert may(app, "member", "approve_release") and not may(app, "member", "trigger_release")
    response = api("member").post(f"/api/v1/releases/{first}/approve", json={"comment": "as dba"})
    assert response.status_code == 200 and response.json["state"] == "APPROVED"

    assert admin.delete("/api/v1/groups/dba/members/member").status_code == 204
    assert not may(app, "member", "approve_release")
    run_jobs()
    assert state(api, second) == "PENDING_APPROVAL"
    response = api("member").post(f"/api/v1/releases/{second}/approve", json={})
    assert response.status_code == 403 and "Release Approval/Reject" in response.json["error"]


def test_a_group_grant_for_one_environment_holds_only_there(app, api, dba, shop):
    admin = api("admin")
    assert admin.put("/api/v1/groups/dba/members/member").status_code == 201
    assert admin.post("/api/v1/groups/dba/grants", json={"permission": "trigger_release",
                                                         "environment": "shop/qa"}).status_code == 201
    assert may(app, "member", "trigger_release", "qa") and not may(app, "member", "trigger_release", "prod")
    grants = admin.get("/api/v1/groups/dba").json["grants"]
    assert [(g["permission"], g["environment"]) for g in grants] == [("trigger_release", "shop/qa")]
    assert admin.delete(f"/api/v1/groups/dba/grants/{grants[0]['id']}").status_code == 204
    assert not may(app, "member", "trigger_release", "qa")
    assert reasons(app, "grant")[-2:] == ["trigger_release granted to group dba on shop/qa",
                                          "trigger_release revoked from group dba on shop/qa"]


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"permission": "rule_the_world"}, 422, "Choose one of: Trigger release, Release Approval/Reject"),
    ({"permission": "manage_users", "environment": "shop/qa"}, 422, "exists only for all environments"),
    ({"permission": "approve_release", "environment": "shop/nope"}, 422,
     "There is no environment shop/nope; write it as PROJECT/ENVIRONMENT"),
    ({"permission": "approve_release", "environment": 3}, 400, "environment must be a string or null."),
    ({"environment": "shop/qa"}, 400, "permission is required to create a grant."),
    ({"permission": "approve_release"}, 409, "The group dba already holds \u201cRelease Approval/Reject\u201d on "
                                             "all environments."),
])
def test_a_bad_group_grant_is_refused_with_a_sentence(app, api, dba, shop, body, status, says):
    admin = api("admin")
    assert admin.post("/api/v1/groups/dba/grants", json={"permission": "approve_release"}).status_code == 201
    response = admin.post("/api/v1/groups/dba/grants", json=body)
    assert response.status_code == status, response.json
    assert says in response.json["error"]
    assert len(admin.get("/api/v1/groups/dba").json["grants"]) == 1


def test_revoking_a_grant_the_group_does_not_hold_is_a_404(api, dba):
    with_user_grant = api("admin").delete("/api/v1/groups/dba/grants/1")  # dev's own grant, not the group's
    assert with_user_grant.status_code == 404
    assert with_user_grant.json["error"] == "The group dba holds no such grant; it may have been revoked already."


# -- rules that name a group ------------------------------------------------------------------------

def test_a_group_that_approval_rules_name_cannot_be_deleted(app, api, dba, shop):
    set_rules(app, [DBA_RULE], "prod")
    set_rules(app, [{"name": "default", "group": None, "approvals": 1}, {**DBA_RULE, "name": "db-review"}], "qa")
    response = api("admin").delete("/api/v1/groups/dba")
    assert response.status_code == 409
    assert response.json["error"] == ("The approval rules of shop/qa, shop/prod name the group dba, so it cannot be "
                                      "deleted; change those rules first, or decide the pending release.")
    assert group_names(app) == ["dba"]

    set_rules(app, [{"name": "dba", "group": None, "approvals": 1}], "prod")  # a rule's name is not a group
    set_rules(app, [], "qa")
    assert api("admin").delete("/api/v1/groups/dba").status_code == 204


def pending_with_dba_rule(app, api, new_environment, run_jobs) -> int:
    """A release of svc/env waiting for one approval from dba, whose member `member` may approve."""
    new_environment(WAITS)
    admin = api("admin")
    assert admin.put("/api/v1/groups/dba/members/member").status_code == 201
    assert admin.post("/api/v1/groups/dba/grants", json={"permission": "approve_release"}).status_code == 201
    set_rules(app, [DBA_RULE])
    release_id = trigger(api)
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    return release_id


def test_a_group_that_a_pending_release_waits_for_cannot_be_deleted(app, api, dba, new_environment, run_jobs):
    release_id = pending_with_dba_rule(app, api, new_environment, run_jobs)
    set_rules(app, [])  # the environment no longer asks for dba; the waiting release still does
    response = api("admin").delete("/api/v1/groups/dba")
    assert response.status_code == 409
    assert f"release #{release_id} (pending approval)" in response.json["error"]
    assert api("approver").post(f"/api/v1/releases/{release_id}/reject", json={}).status_code == 403  # not in dba
    assert api("member").post(f"/api/v1/releases/{release_id}/reject", json={}).status_code == 200
    assert api("admin").delete("/api/v1/groups/dba").status_code == 204


def test_renaming_a_group_rewrites_every_rule_that_names_it(app, api, dba, new_environment, run_jobs):
    release_id = pending_with_dba_rule(app, api, new_environment, run_jobs)
    other = {"name": "sre", "group": "sre", "approvals": 1}
    assert api("admin").post("/api/v1/groups", json={"name": "sre"}).status_code == 201
    set_rules(app, [{"name": "default", "group": None, "approvals": 1}, DBA_RULE, other])

    response = api("admin").patch("/api/v1/groups/dba", json={"name": "db-owners"})
    assert response.status_code == 200
    assert rules_of(app) == [{"name": "default", "group": None, "approvals": 1},
                             {"name": "dba", "group": "db-owners", "approvals": 1}, other]
    with app.app_context():
        assert db.session.get(Release, release_id).approval_rules == [
            {"name": "dba", "group": "db-owners", "approvals": 1}]
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "settings")
                                  .order_by(AuditEvent.id.desc()))
        assert event.reason == "group dba renamed to db-owners: the approval rules follow it"
        assert event.environment_id is not None and event.details["group"] == {"old": "dba", "new": "db-owners"}
    assert reasons(app, "group")[-1] == (f"group dba renamed to db-owners; approval rules of svc/env, "
                                         f"release #{release_id} now name db-owners")
    events = api("member").get("/api/v1/projects/svc/environments/env/events").json["items"]
    assert events[0]["reason"] == "group dba renamed to db-owners: the approval rules follow it"

    # The waiting release still asks the same people: member counts for the renamed group.
    response = api("member").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert response.status_code == 200 and response.json["state"] == "APPROVED"
    assert api("admin").delete("/api/v1/groups/db-owners").status_code == 409  # svc/env names it by its new name


def test_a_refused_rename_rewrites_nothing(app, api, dba, new_environment):
    new_environment(WAITS)
    set_rules(app, [DBA_RULE])
    assert api("admin").post("/api/v1/groups", json={"name": "sre"}).status_code == 201
    assert api("admin").patch("/api/v1/groups/dba", json={"name": "sre"}).status_code == 409
    assert rules_of(app) == [DBA_RULE]
    assert reasons(app, "settings") == ["environment env created"]


# -- losing a right ends email links ---------------------------------------------------------------

def link_for(app, who: str, release_id: int) -> int:
    """An Approve link as mailed to `who`; returns its row's id."""
    from webapp.notify import email_links

    with app.app_context():
        user_id = db.session.scalar(sa.select(User.id).where(User.username == who))
        email_links.issue(user_id, release_id, "approve")
        db.session.commit()
        return db.session.scalar(sa.select(sa.func.max(EmailLink.id)))


def link_state(app, link_id: int) -> tuple:
    with app.app_context():
        link = db.session.get(EmailLink, link_id)
        return link.revoked_at is not None, link.revoked_reason


def lose_it(api, how: str) -> None:
    admin = api("admin")
    if how == "removed from the group":
        assert admin.delete("/api/v1/groups/dba/members/member").status_code == 204
    elif how == "group deleted":
        assert admin.delete("/api/v1/groups/dba").status_code == 204
    else:
        [grant] = admin.get("/api/v1/groups/dba").json["grants"]
        assert admin.delete(f"/api/v1/groups/dba/grants/{grant['id']}").status_code == 204


@pytest.mark.parametrize("how", ["removed from the group", "group deleted", "the group's grant revoked"])
def test_losing_approve_release_through_the_group_ends_the_members_email_links(app, api, web, dba, new_environment,
                                                                              run_jobs, how):
    new_environment(WAITS)
    admin = api("admin")
    # approver also holds approve_release in person, and admin decides whatever the grants say
    for who in ("member", "approver", "admin"):
        assert admin.put(f"/api/v1/groups/dba/members/{who}").status_code == 201
    assert admin.post("/api/v1/groups/dba/grants", json={"permission": "approve_release"}).status_code == 201
    release_id = trigger(api)
    run_jobs()
    links = {who: link_for(app, who, release_id) for who in ("member", "approver", "admin")}

    lose_it(api, how)
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action.in_(("group", "grant")))
                                  .order_by(AuditEvent.id.desc()))
        assert event.details["links_revoked"] == 1
    if how == "removed from the group":
        assert admin.delete("/api/v1/groups/dba/members/approver").status_code == 204
        assert admin.delete("/api/v1/groups/dba/members/admin").status_code == 204
    assert link_state(app, links["member"]) == (True, LOST)
    assert link_state(app, links["approver"]) == (False, None)  # still allowed: the link still works
    assert link_state(app, links["admin"]) == (False, None)
    with app.app_context():  # granting it again, in person, does not bring the link back
        from webapp.accounts import add_grant

        add_grant(db.session.scalar(sa.select(User).where(User.username == "member")), "approve_release")
    assert link_state(app, links["member"]) == (True, LOST)


def test_removing_a_member_leaves_links_alone_when_the_group_grants_no_approval(app, api, dba, new_environment,
                                                                               run_jobs):
    new_environment(WAITS)
    admin = api("admin")
    assert admin.put("/api/v1/groups/dba/members/approver").status_code == 201
    release_id = trigger(api)
    run_jobs()
    link = link_for(app, "approver", release_id)
    assert admin.delete("/api/v1/groups/dba/members/approver").status_code == 204
    assert link_state(app, link) == (False, None)
