"""Each permission is enforced on the server, through the API and through the pages (SPEC §6, §7).

permission_cases.CASES lists every route that require_permission gates, one row each; a test
below checks the list against the app's url_map, so a new gated route without a row fails the
suite (tests/web/test_routes.py already fails a state-changing route that is not gated at all).

Every route has two doors: the API with a bearer token or with the browser session and its
X-CSRFToken header; a page as a plain form post or as an htmx post, each with a valid CSRF
token. For each row, acting as `member` (who starts with no grant):

1. without the permission: through both doors, 403 with a sentence naming the permission
   (the JSON `error`; the error page's message; the message htmx swaps into #messages),
   and not one row of the database differs afterwards (a token's last-used time aside);
2. with the permission for another environment: the same;
3. with it for this one environment: allowed where a per-environment grant is meant to be
   enough (`scoped`), refused with nothing changed where the route needs all environments;
4. with it for all environments: allowed, and the table the route exists to change changed;
   a second test allows it through the other door.

The rules that are not one permission are in test_permission_rules.py. The last section asks the
check itself directly (webapp.permissions): who holds a permission where (their own grant, their
group's, for one environment or all; admins everything; nobody signed out or deactivated anything),
the whole sentence of a refusal, and who may decide or cancel a release.

Releases are put in the state a case needs through the state machine's own entry points
(releases.record_hook_result is what the worker calls when a hook exits), not by running
hooks: these tests are about who may act, and stay quick.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask_login import AnonymousUserMixin

from tests.helpers import CHANGE, trigger
from tests.web.permission_cases import (
    API_ENV,
    CASES,
    ENV,
    ENV_PATH,
    OTHER,
    REASON,
    Case,
    _fill,
    assert_allowed,
    assert_refused,
    build,
    changed_tables,
    doors,
    needs,
    send,
    snapshot,
    world,  # noqa: F401 - fixtures, used by name
)
from tests.web.test_routes import STATE_CHANGING, UNGATED
from webapp import permissions
from webapp.extensions import db
from webapp.models import Environment, Grant, Group, Release, User
from webapp.permissions import PERMISSIONS, PermissionDenied, has_permission, has_permission_somewhere, require

# -- the table -----------------------------------------------------------------------------------------

def test_every_gated_route_has_a_case_with_its_permission(app):
    """The table is the url_map's list: every state-changing route outside test_routes.UNGATED,
    with the permission its decorator names, at an address that reaches it."""
    adapter = app.url_map.bind("localhost")
    gated = {rule.endpoint: getattr(app.view_functions[rule.endpoint], "required_permission", None)
             for rule in app.url_map.iter_rules()
             if rule.methods & STATE_CHANGING and rule.endpoint not in UNGATED}
    covered = {case.endpoint: case.permission for case in CASES}
    assert len(covered) == len(CASES), "two cases for one route"
    assert sorted(set(gated) - set(covered)) == [], "gated routes without a case in CASES"
    assert sorted(set(covered) - set(gated)) == [], "cases for routes that are not gated (or gone)"
    assert covered == gated, "a case names another permission than the route's decorator"
    placeholders = {"release": 1, "token": "t", "dev": 1, "dev_grant": 1, "gone": 1, "webhook": 1, "delivery": 1,
                    "repo": "r", "group_grant": 1, "slack_channel": 1}
    for case in CASES:
        endpoint, _args = adapter.match(_fill(case.path, placeholders), method=case.method)
        assert endpoint == case.endpoint, (case.path, endpoint)
    assert {case.permission for case in CASES} | CHECKED_INSIDE == set(PERMISSIONS)


# Permissions a route's decorator cannot name, since the body decides whether they are needed:
# an emergency release is a trigger with "break_glass" (tested below).
CHECKED_INSIDE = {"break_glass"}


EMERGENCY = Case("api.trigger_release", "break_glass", "POST", f"{API_ENV}/releases",
                 {"resources": CHANGE, "break_glass": {"reason": REASON}}, ok=202)


def test_an_emergency_release_needs_break_glass_on_the_environment_besides_trigger_release(world):
    """The trigger route lets in whoever may trigger; releases.trigger then refuses an emergency
    release without break_glass on this environment, through both doors, changing nothing."""
    assert world.api("admin").patch(API_ENV, json={"allow_break_glass": True}).status_code == 200
    world.grant("member", "trigger_release", ENV)
    assert_refused(world, EMERGENCY, "member", {}, says=needs("break_glass"))
    world.grant("member", "break_glass", OTHER)
    assert_refused(world, EMERGENCY, "member", {}, says=needs("break_glass"))
    world.grant("member", "break_glass", ENV)
    values = {}
    before = snapshot(world.app)
    response = send(world, EMERGENCY, "member", values, "token")
    assert response.status_code == 202, response.json
    assert response.json["break_glass"]["reason"] == REASON
    assert "releases" in changed_tables(before, snapshot(world.app))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.endpoint)
def test_refused_without_the_permission_or_with_it_elsewhere_allowed_with_it(world, case):
    """Steps 1–4 of the module's docstring; the success goes through the first door (bearer
    token, plain form), with the exact status the route answers."""
    values = build(world, case.target)
    where = ENV_PATH if case.scoped else None
    # (manage_users has no per-environment form: the admin page and the CLI refuse one, see
    # below; World.grant writes the row anyway, to show that such a row grants nothing.)

    assert_refused(world, case, "member", values, says=needs(case.permission, where))

    world.grant("member", case.permission, OTHER)
    assert_refused(world, case, "member", values, says=needs(case.permission, where))

    world.grant("member", case.permission, ENV)
    if case.scoped:
        assert_allowed(world, case, "member", values, doors(case)[0])
        return
    assert_refused(world, case, "member", values, says=needs(case.permission, None))

    world.grant("member", case.permission)
    if case.admin_only:  # manage_users is needed, and webhooks are for admins on top
        assert_refused(world, case, "member", values, says="Only admins can manage webhooks")
        assert_allowed(world, case, "admin", values, doors(case)[0])
    else:
        assert_allowed(world, case, "member", values, doors(case)[0])


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.endpoint)
def test_a_grant_for_all_environments_allows_through_the_other_door(world, case):
    """The success through the second door: the API with the browser session and its CSRF
    header, the pages as htmx posts them."""
    values = build(world, case.target)
    world.grant("member", case.permission)
    assert_allowed(world, case, "admin" if case.admin_only else "member", values, doors(case)[1])


# -- the check itself, asked directly ----------------------------------------------------------------

HOOK = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}  # every release waits for approval
KNOWN = "trigger_release, approve_release, cancel_release, break_glass, manage_environments, manage_users"


@pytest.fixture()
def places(app, api, new_environment):
    """svc/env and svc/other; returns a function giving (env, other) in the current app context."""
    new_environment(HOOK)
    new_environment(HOOK, name="other")

    def environments() -> tuple[Environment, Environment]:
        return tuple(db.session.scalars(sa.select(Environment).order_by(Environment.id)))

    return environments


def _user(name: str, *, admin: bool = False, active: bool = True) -> User:
    user = User(username=name, email=f"{name}@example.com", password_hash="-", is_admin=admin, active=active)
    db.session.add(user)
    db.session.flush()
    return user


def _grant(permission: str, *, user: User | None = None, group: Group | None = None,
           environment: Environment | None = None) -> None:
    db.session.add(Grant(user_id=user.id if user else None, group_id=group.id if group else None,
                         permission=permission, environment_id=environment.id if environment else None))
    db.session.flush()


def test_a_grant_for_one_environment_covers_only_it_and_one_for_all_covers_every_one(app, places):
    with app.app_context():
        env, other = places()
        local, everywhere, elsewhere, nobody = (_user(name) for name in ("local", "everywhere", "elsewhere", "nobody"))
        _grant("approve_release", user=local, environment=env)
        _grant("approve_release", user=everywhere)
        _grant("trigger_release", user=elsewhere, environment=env)  # another permission
        _grant("trigger_release", user=elsewhere)
        held = {user.username: [has_permission(user, "approve_release", where) for where in (env, other, None)]
                for user in (local, everywhere, elsewhere, nobody)}
        assert held == {"local": [True, False, False], "everywhere": [True, True, True],
                        "elsewhere": [False, False, False], "nobody": [False, False, False]}
        somewhere = {user.username: has_permission_somewhere(user, "approve_release")
                     for user in (local, everywhere, elsewhere, nobody)}
        assert somewhere == {"local": True, "everywhere": True, "elsewhere": False, "nobody": False}


def test_a_groups_grant_is_held_by_its_members_only(app, places):
    with app.app_context():
        env, other = places()
        member, outsider = _user("member1"), _user("outsider")
        group = Group(name="sre", members=[member])
        db.session.add(group)
        db.session.flush()
        _grant("cancel_release", group=group, environment=other)
        assert [has_permission(member, "cancel_release", where) for where in (env, other, None)] == [
            False, True, False]
        assert [has_permission(outsider, "cancel_release", where) for where in (env, other, None)] == [
            False, False, False]
        assert has_permission_somewhere(member, "cancel_release") is True
        assert has_permission_somewhere(outsider, "cancel_release") is False


def test_admins_hold_everything_and_nobody_signed_out_or_deactivated_holds_anything(app, places):
    with app.app_context():
        env, _other = places()
        admin, gone, gone_admin = _user("boss", admin=True), _user("gone", active=False), _user(
            "gone-boss", admin=True, active=False)
        _grant("manage_environments", user=gone)
        for permission in permissions.PERMISSIONS:
            assert has_permission(admin, permission, env) and has_permission(admin, permission)
            assert has_permission_somewhere(admin, permission)
        for who in (None, AnonymousUserMixin(), gone, gone_admin):
            assert not has_permission(who, "manage_environments", env)
            assert not has_permission(who, "manage_environments")
            assert not has_permission_somewhere(who, "manage_environments")


def test_an_unknown_permission_is_an_error_wherever_it_is_asked(app, places):
    sentence = f"Unknown permission 'aprove_release'; known: {KNOWN}."
    with app.app_context():
        admin = _user("boss", admin=True)
        for ask in (lambda: has_permission(admin, "aprove_release"),
                    lambda: has_permission_somewhere(admin, "aprove_release"),
                    lambda: permissions.require_permission("aprove_release")):
            with pytest.raises(ValueError) as unknown:
                ask()
            assert str(unknown.value) == sentence
    assert permissions.require_permission("cancel_release")(lambda: None).required_permission == "cancel_release"


def test_a_refusal_names_the_permission_and_where_it_is_missing(app, places):
    with app.app_context():
        env, other = places()
        local = _user("local")
        _grant("trigger_release", user=local, environment=env)
        require(local, "trigger_release", env)  # held: no refusal
        with pytest.raises(PermissionDenied) as refused:
            require(local, "trigger_release", other)
        assert str(refused.value) == ("You need the \u201cTrigger release\u201d permission on svc/other to do this; "
                                      "ask an admin for a grant.")
        with pytest.raises(PermissionDenied) as refused:
            require(local, "manage_users")
        assert str(refused.value) == ("You need the \u201cManage users\u201d permission to do this; "
                                      "ask an admin for a grant.")


def test_who_may_decide_a_pending_release_and_why_not(app, api, places, people):
    release_id = trigger(api, "approver")
    with app.app_context():
        env, other = places()
        release = db.session.get(Release, release_id)
        approver = db.session.scalar(sa.select(User).where(User.username == "approver"))
        outsider, elsewhere = _user("outsider"), _user("elsewhere")
        _grant("approve_release", user=elsewhere, environment=other)
        assert permissions.decide_refusal(release, None) == "Sign in to approve or reject releases."
        assert permissions.decide_refusal(release, AnonymousUserMixin()) == "Sign in to approve or reject releases."
        missing = ("You need the \u201cRelease Approval/Reject\u201d permission on svc/env to do this; "
                   "ask an admin for a grant.")
        assert permissions.decide_refusal(release, outsider) == missing
        assert permissions.decide_refusal(release, elsewhere) == missing
        assert permissions.decide_refusal(release, approver) == (
            "You triggered this release, so someone else must approve or reject it "
            "(withdraw it if it should not go ahead).")
        assert not permissions.may_decide(release, approver)
        env.allow_self_approval = True
        assert permissions.decide_refusal(release, approver) is None and permissions.may_decide(release, approver)


def test_only_the_triggerer_may_cancel_without_the_permission(app, api, places):
    release_id = trigger(api, "approver")
    with app.app_context():
        places()
        release = db.session.get(Release, release_id)
        approver = db.session.scalar(sa.select(User).where(User.username == "approver"))
        assert permissions.may_cancel(release, approver) is True
        assert permissions.may_cancel(release, _user("someone")) is False
        assert permissions.may_cancel(release, None) is False
