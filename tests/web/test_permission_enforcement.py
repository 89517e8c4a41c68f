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

The rules that are not one permission are in test_permission_rules.py.

Releases are put in the state a case needs through the state machine's own entry points
(releases.record_hook_result is what the worker calls when a hook exits), not by running
hooks: these tests are about who may act, and stay quick.
"""
from __future__ import annotations

import pytest

from tests.helpers import CHANGE
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
from webapp.permissions import PERMISSIONS

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

