"""The table of gated routes and the world its permission tests act in (SPEC §6, §7).

CASES lists every route that require_permission gates, one row each: its endpoint, the
permission its decorator names, its address and body, whether a grant for one environment is
enough (`scoped`), and the state or table it exists to change. `world` is the fixture every
permission test acts in: project shop with qa and prod, and the fixtures' personas. Then the
helpers that put a case's target in place (build), ask through either door (send, doors), and
say what an answer must look like (assert_refused, assert_allowed, needs, snapshot).

Used by test_permission_enforcement.py (one case per gated route) and
test_permission_rules.py (the rules that are not one permission).
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import CHANGE, state, trigger
from webapp import releases
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, Grant, Project, SlackChannel, User, WebhookEndpoint
from webapp.permissions import PERMISSIONS

PROJECT, ENV, OTHER = "shop", "prod", "qa"  # every case acts on shop/prod; a grant on shop/qa must not help
ENV_PATH = f"{PROJECT}/{ENV}"
API_ENV = f"/api/v1/projects/{PROJECT}/environments/{ENV}"
PAGE_ENV = f"/projects/{PROJECT}/environments/{ENV}"
HX = {"HX-Request": "true"}
SETTINGS_FORM = {  # prod's settings as its form sends them, with the hook timeout changed from 300
    "release_stream": "PROD", "mode": "approval", "release_command": 'bash deploy.sh "$1"',
    "hook_ref": "", "hook_timeout_seconds": "120", "release_timeout_seconds": "3600",
    "approval_timeout_hours": ""}
WEBHOOK_FORM = {"name": "audit", "url": "https://hooks.example.com/releases", "events": ["release.queued"],
                "format": "json", "scope": "all", "secret": "a-secret-of-enough-length"}


@dataclass(frozen=True)
class Case:
    """One gated route: what it needs, what it acts on, and what success changes."""

    endpoint: str
    permission: str
    method: str
    path: str  # {placeholders} are filled from what `target` built
    body: dict[str, Any] | None = None
    target: str | None = None  # see build()
    ok: int = 200
    writes: str = "releases"  # the table a success changes
    to_state: str | None = None  # the target release's state after a success
    scoped: bool = True  # a grant for the one environment is enough
    admin_only: bool = False  # webhooks: manage_users and an admin (docs/integrations.md)

    @property
    def api(self) -> bool:
        return self.path.startswith("/api/")


CASES = [
    # -- trigger_release ------------------------------------------------------------------------------
    Case("api.trigger_release", "trigger_release", "POST", f"{API_ENV}/releases", {"resources": CHANGE}, ok=202),
    Case("api.finish", "trigger_release", "POST", "/api/v1/releases/{release}/finish",
         {"result": "SUCCEEDED", "log": "deployed by CI"}, target="awaiting_finish", to_state="SUCCEEDED"),
    Case("trigger_page.trigger_submit", "trigger_release", "POST", "/trigger",
         {"environment": ENV_PATH, "resources": json.dumps(CHANGE)}, ok=303),
    Case("release_pages.trigger_again", "trigger_release", "POST", "/releases/{release}/trigger-again",
         target="queued", ok=303),
    # -- approve_release ------------------------------------------------------------------------------
    Case("api.approve", "approve_release", "POST", "/api/v1/releases/{release}/approve", {"comment": "ok"},
         target="pending", to_state="APPROVED"),
    Case("api.reject", "approve_release", "POST", "/api/v1/releases/{release}/reject", {"comment": "no"},
         target="pending", to_state="REJECTED"),
    Case("release_pages.approve", "approve_release", "POST", "/releases/{release}/approve", {"comment": "ok"},
         target="pending", ok=303, to_state="APPROVED"),
    Case("release_pages.reject", "approve_release", "POST", "/releases/{release}/reject", {"comment": "no"},
         target="pending", ok=303, to_state="REJECTED"),
    Case("email_links.decide", "approve_release", "POST", "/email/links/{token}", {"comment": "ok"},
         target="email_link", to_state="APPROVED"),
    Case("api.review", "approve_release", "POST", "/api/v1/releases/{release}/review",
         {"comment": "the hotfix was right"}, target="emergency", to_state="SUCCEEDED"),
    Case("release_pages.review", "approve_release", "POST", "/releases/{release}/review",
         {"comment": "the hotfix was right"}, target="emergency", ok=303, to_state="SUCCEEDED"),
    # -- cancel_release -------------------------------------------------------------------------------
    Case("api.cancel", "cancel_release", "POST", "/api/v1/releases/{release}/cancel", target="queued",
         to_state="CANCELLED"),
    Case("api.abort_release", "cancel_release", "POST", "/api/v1/releases/{release}/abort", target="running",
         to_state="FAILED"),
    Case("release_pages.cancel", "cancel_release", "POST", "/releases/{release}/cancel", target="queued",
         ok=303, to_state="CANCELLED"),
    Case("release_pages.abort_release", "cancel_release", "POST", "/releases/{release}/abort", target="running",
         ok=303, to_state="FAILED"),
    # -- manage_environments --------------------------------------------------------------------------
    Case("api.update_environment", "manage_environments", "PATCH", API_ENV, {"hook_timeout_seconds": 120},
         writes="environments"),
    Case("api.put_variable", "manage_environments", "PUT", f"{API_ENV}/variables/NEW_VAR", {"value": "v"},
         ok=201, writes="variables"),
    Case("api.delete_variable", "manage_environments", "DELETE", f"{API_ENV}/variables/OLD_VAR",
         target="variable", ok=204, writes="variables"),
    Case("environment_pages.save_settings", "manage_environments", "POST", f"{PAGE_ENV}/settings", SETTINGS_FORM,
         ok=303, writes="environments"),
    Case("environment_pages.save_variable", "manage_environments", "POST", f"{PAGE_ENV}/variables",
         {"name": "NEW_VAR", "value": "v"}, ok=303, writes="variables"),
    Case("environment_pages.delete_variable", "manage_environments", "POST", f"{PAGE_ENV}/variables/OLD_VAR/delete",
         target="variable", ok=303, writes="variables"),
    # ... for all environments only: creating projects and environments, editing a project
    Case("api.create_project", "manage_environments", "POST", "/api/v1/projects", {"name": "blog", "repo": "{repo}"},
         ok=201, writes="projects", scoped=False),
    Case("api.update_project", "manage_environments", "PATCH", f"/api/v1/projects/{PROJECT}",
         {"web_url_template": "https://git.example.com/c/{sha}"}, writes="projects", scoped=False),
    Case("api.create_environment", "manage_environments", "POST", f"/api/v1/projects/{PROJECT}/environments",
         {"name": "stage", "release_stream": "STAGE"}, ok=201, writes="environments", scoped=False),
    Case("admin.create_project", "manage_environments", "POST", "/admin/projects",
         {"name": "blog", "repo": "{repo}", "branch": "main", "hook_ref": ""}, ok=302, writes="projects",
         scoped=False),
    Case("admin.update_project", "manage_environments", "POST", f"/admin/projects/{PROJECT}",
         {"repo": "{repo}", "branch": "release", "hook_ref": ""}, ok=302, writes="projects", scoped=False),
    Case("admin.create_environment", "manage_environments", "POST", f"/admin/projects/{PROJECT}/environments",
         {"name": "stage", "release_stream": "STAGE", "mode": "approval"}, ok=302, writes="environments",
         scoped=False),
    # -- manage_users (exists for all environments only) ----------------------------------------------
    Case("admin.create_user", "manage_users", "POST", "/admin/users",
         {"username": "newbie", "email": "newbie@example.com", "password": "newbie-password-123"}, ok=302,
         writes="users", scoped=False),
    Case("admin.deactivate_user", "manage_users", "POST", "/admin/users/{dev}/deactivate", ok=302,
         writes="users", scoped=False),
    Case("admin.reactivate_user", "manage_users", "POST", "/admin/users/{gone}/reactivate", target="deactivated",
         ok=302, writes="users", scoped=False),
    Case("admin.reset_password", "manage_users", "POST", "/admin/users/{dev}/password",
         {"password": "another-password-123"}, ok=302, writes="users", scoped=False),
    Case("admin.grant", "manage_users", "POST", "/admin/users/{dev}/grants",
         {"permission": "approve_release", "environment": "all"}, ok=302, writes="grants", scoped=False),
    Case("admin.revoke_grant", "manage_users", "POST", "/admin/users/{dev}/grants/{dev_grant}/revoke", ok=302,
         writes="grants", scoped=False),
    # ... groups: the API and the pages (target "group": dba, dev a member, holding approve_release)
    Case("api.create_group", "manage_users", "POST", "/api/v1/groups", {"name": "sre", "description": "on call"},
         ok=201, writes="groups", scoped=False),
    Case("api.update_group", "manage_users", "PATCH", "/api/v1/groups/dba", {"name": "dbas"}, target="group",
         writes="groups", scoped=False),
    Case("api.delete_group", "manage_users", "DELETE", "/api/v1/groups/dba", target="group", ok=204,
         writes="groups", scoped=False),
    Case("api.add_member", "manage_users", "PUT", "/api/v1/groups/dba/members/approver", target="group", ok=201,
         writes="group_members", scoped=False),
    Case("api.remove_member", "manage_users", "DELETE", "/api/v1/groups/dba/members/dev", target="group", ok=204,
         writes="group_members", scoped=False),
    Case("api.grant_to_group", "manage_users", "POST", "/api/v1/groups/dba/grants",
         {"permission": "trigger_release", "environment": ENV_PATH}, target="group", ok=201, writes="grants",
         scoped=False),
    Case("api.revoke_group_grant", "manage_users", "DELETE", "/api/v1/groups/dba/grants/{group_grant}",
         target="group", ok=204, writes="grants", scoped=False),
    Case("admin_groups.create_group", "manage_users", "POST", "/admin/groups", {"name": "sre", "description": ""},
         ok=302, writes="groups", scoped=False),
    Case("admin_groups.update_group", "manage_users", "POST", "/admin/groups/dba",
         {"name": "dba", "description": "Database people"}, target="group", ok=302, writes="groups", scoped=False),
    Case("admin_groups.delete_group", "manage_users", "POST", "/admin/groups/dba/delete", target="group", ok=302,
         writes="groups", scoped=False),
    Case("admin_groups.add_member", "manage_users", "POST", "/admin/groups/dba/members", {"username": "approver"},
         target="group", ok=302, writes="group_members", scoped=False),
    Case("admin_groups.remove_member", "manage_users", "POST", "/admin/groups/dba/members/{dev}/remove", target="group",
         ok=302, writes="group_members", scoped=False),
    Case("admin_groups.grant_to_group", "manage_users", "POST", "/admin/groups/dba/grants",
         {"permission": "trigger_release", "environment": "all"}, target="group", ok=302, writes="grants",
         scoped=False),
    Case("admin_groups.revoke_group_grant", "manage_users", "POST", "/admin/groups/dba/grants/{group_grant}/revoke",
         target="group", ok=302, writes="grants", scoped=False),
    Case("integrations.create_webhook", "manage_users", "POST", "/admin/webhooks", WEBHOOK_FORM, ok=302,
         writes="webhook_endpoints", scoped=False, admin_only=True),
    Case("integrations.update_webhook", "manage_users", "POST", "/admin/webhooks/{webhook}",
         {**WEBHOOK_FORM, "name": "renamed"}, target="webhook", ok=302, writes="webhook_endpoints", scoped=False,
         admin_only=True),
    Case("integrations.delete_webhook", "manage_users", "POST", "/admin/webhooks/{webhook}/delete",
         target="webhook", ok=302, writes="webhook_endpoints", scoped=False, admin_only=True),
    Case("integrations.redeliver", "manage_users", "POST", "/admin/webhooks/deliveries/{delivery}/redeliver",
         target="delivery", ok=302, writes="webhook_deliveries", scoped=False, admin_only=True),
    Case("integrations.add_slack_channel", "manage_users", "POST", "/admin/slack/channels",
         {"channel": "C0RELEASES", "environment": ""}, ok=302, writes="slack_channels", scoped=False,
         admin_only=True),
    Case("integrations.delete_slack_channel", "manage_users", "POST", "/admin/slack/channels/{slack_channel}/delete",
         target="slack_channel", ok=302, writes="slack_channels", scoped=False, admin_only=True),
]


# -- the world every case acts in -------------------------------------------------------------------

@dataclass
class World:
    app: Any
    api: Any
    people: Any
    web: Any
    repo: str
    browsers: dict[str, Any] = field(default_factory=dict)

    def browser(self, name: str):
        """A test client signed in as `name` through the sign-in form (one per persona)."""
        if name not in self.browsers:
            self.browsers[name] = self.web(name)
        return self.browsers[name]

    def user_id(self, name: str) -> int:
        with self.app.app_context():
            return db.session.scalar(sa.select(User.id).where(User.username == name))

    def environment(self, name: str) -> Environment:
        return db.session.scalar(sa.select(Environment).join(Project).where(
            Project.name == PROJECT, Environment.name == name))

    def grant(self, name: str, permission: str, environment: str | None = None) -> None:
        """Give `name` the permission for all environments or one (the CLI's function: for
        manage_users it writes the per-environment row the admin page and the CLI refuse)."""
        from webapp.accounts import add_grant

        with self.app.app_context():
            user = db.session.get(User, self.user_id(name))
            add_grant(user, permission, self.environment(environment) if environment else None)

    def record_hook(self, release_id: int, exit_code: int) -> None:
        """What the worker records when the hook exits (2: waits for approval; 0: goes ahead)."""
        from webapp import releases

        with self.app.app_context():
            assert releases.record_hook_result(release_id, exit_code=exit_code, output="stub", truncated=False)

    def release_state(self, release_id: int) -> str:
        return state(self.api, release_id)


@pytest.fixture()
def world(app, api, people, web, shop) -> World:
    """Project shop with qa and prod (approval workflow on, a release command), the
    fixtures' personas (admin, dev: trigger+cancel, approver: approve+trigger, member: none)."""
    return World(app, api, people, web, str(shop))


def build(world: World, target: str | None) -> dict[str, Any]:
    """Make what a case acts on; return the values its path and body name."""
    app = world.app
    values: dict[str, Any] = {"repo": world.repo, "dev": world.user_id("dev")}
    with app.app_context():
        values["dev_grant"] = db.session.scalar(sa.select(Grant.id).where(
            Grant.user_id == values["dev"], Grant.permission == "trigger_release"))
    if target == "queued":  # dev's release waiting behind dev's release holding the slot
        trigger(world.api, "dev", path=ENV_PATH)
        values["release"] = trigger(world.api, "dev", path=ENV_PATH)
        assert world.release_state(values["release"]) == "QUEUED"
    elif target in ("pending", "email_link"):  # dev's release, pending approval
        values["release"] = trigger(world.api, "dev", path=ENV_PATH)
        world.record_hook(values["release"], 2)
        if target == "email_link":  # the Approve link mailed to member
            values["token"] = email_link(world, "member", "approve", values["release"])
    elif target == "running":  # dev's release running its release command
        values["release"] = trigger(world.api, "dev", path=ENV_PATH)
        world.record_hook(values["release"], 0)
        assert world.release_state(values["release"]) == "IN_PROGRESS"
    elif target == "awaiting_finish":  # dev's release waiting for CI to report
        response = world.api("admin").patch(API_ENV, json={"release_command": None,
                                                           "wait_for_external_finish": True})
        assert response.status_code == 200, response.json
        values["release"] = trigger(world.api, "dev", path=ENV_PATH)
        world.record_hook(values["release"], 0)
        assert world.release_state(values["release"]) == "IN_PROGRESS"
    elif target == "emergency":  # admin's emergency release, finished, waiting for its review
        response = world.api("admin").patch(API_ENV, json={"release_command": None, "allow_break_glass": True})
        assert response.status_code == 200, response.json
        values["release"] = trigger(world.api, "admin", path=ENV_PATH, break_glass={"reason": REASON})
        with app.app_context():
            assert releases.succeed_without_command(values["release"])
        assert world.release_state(values["release"]) == "SUCCEEDED"
    elif target == "variable":
        response = world.api("admin").put(f"{API_ENV}/variables/OLD_VAR", json={"value": "old"})
        assert response.status_code == 201, response.json
    elif target == "deactivated":
        values["gone"] = world.people.add("gone")
        admin = world.browser("admin")
        assert admin.post(f"/admin/users/{values['gone']}/deactivate",
                          data={"csrf_token": admin.csrf}).status_code == 302
    elif target == "group":  # dba: dev is a member, and the group holds approve_release for all environments
        admin = world.api("admin")
        assert admin.post("/api/v1/groups", json={"name": "dba"}).status_code == 201
        assert admin.put("/api/v1/groups/dba/members/dev").status_code == 201
        response = admin.post("/api/v1/groups/dba/grants", json={"permission": "approve_release"})
        assert response.status_code == 201, response.json
        values["group_grant"] = response.json["id"]
    elif target in ("webhook", "delivery"):
        admin = world.browser("admin")
        assert admin.post("/admin/webhooks", data={**WEBHOOK_FORM, "csrf_token": admin.csrf}).status_code == 302
        with app.app_context():
            values["webhook"] = db.session.scalar(sa.select(sa.func.max(WebhookEndpoint.id)))
        if target == "delivery":  # a delivery of dev's release.queued event that gave up
            from webapp.notify import webhooks

            release_id = trigger(world.api, "dev", path=ENV_PATH)
            with app.app_context():
                queued = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.release_id == release_id))
                [delivery] = webhooks.add_deliveries("release.queued", queued)
                delivery.status = "failed"
                db.session.commit()
                values["delivery"] = delivery.id
    elif target == "slack_channel":
        admin = world.browser("admin")
        response = admin.post("/admin/slack/channels", data={"channel": "C0OLD", "csrf_token": admin.csrf})
        assert response.status_code == 302, response.text
        with app.app_context():
            values["slack_channel"] = db.session.scalar(sa.select(sa.func.max(SlackChannel.id)))
    else:
        assert target is None, f"unknown target {target!r}"
    return values


# -- asking, and what an answer must look like ---------------------------------------------------------

def _fill(value: Any, values: dict[str, Any]) -> Any:
    """Put `values` in for the {names} in a string (other braces, as in JSON, stay)."""
    if not isinstance(value, str):
        return value
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), value)


def send(world: World, case: Case, who: str, values: dict[str, Any], door: str):
    """The case's request as `who` through `door`. API: "token" (bearer) or "session" (the
    signed-in browser's cookie with its X-CSRFToken header); pages: "form" (a plain form post
    with its csrf_token) or "htmx" (the same post as htmx sends it)."""
    path = _fill(case.path, values)
    body = {key: _fill(value, values) for key, value in (case.body or {}).items()}
    if door == "token":
        return world.app.test_client().open(path, method=case.method, json=body if case.body is not None else None,
                                            headers=world.people.headers(who))
    client = world.browser(who)
    if door == "session":
        return client.open(path, method=case.method, json=body if case.body is not None else None,
                           headers={"X-CSRFToken": client.csrf})
    return client.open(path, method=case.method, data={**body, "csrf_token": client.csrf},
                       headers=HX if door == "htmx" else {})


def doors(case: Case) -> tuple[str, str]:
    return ("token", "session") if case.api else ("form", "htmx")


def refusal_sentence(response, door: str) -> str:
    """The sentence a refused person reads: the JSON `error`, the message htmx swaps into the
    page's message area, or the error page's."""
    assert response.status_code == 403, f"{response.status_code} where 403 was due: {response.text[:400]}"
    if door in ("token", "session"):
        assert response.is_json, response.text[:200]
        message = response.json["error"]
    elif door == "htmx":
        assert response.headers.get("HX-Retarget") == "#messages", dict(response.headers)
        found = re.search(r'<div class="message message-error"[^>]*>(.*?)</div>', response.text, re.S)
        assert found, response.text[:400]
        message = html.unescape(found.group(1)).strip()
    else:
        found = re.search(r"<h1>Not allowed</h1>\s*<p>(.*?)</p>", response.text, re.S)
        assert found, response.text[:400]
        message = html.unescape(found.group(1)).strip()
    assert isinstance(message, str) and len(message) > 20 and message.endswith("."), message
    return message


def snapshot(app) -> dict[str, list[tuple]]:
    """Every row of every table (an API token's last-used time aside: using a token is not acting)."""
    tables = {}
    with app.app_context(), db.engine.connect() as connection:
        for table in db.metadata.sorted_tables:
            columns = [c for c in table.columns if (table.name, c.name) != ("api_tokens", "last_used_at")]
            query = sa.select(*columns).order_by(*table.primary_key.columns)
            tables[table.name] = [tuple(row) for row in connection.execute(query)]
    return tables


def changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(name for name in before if before[name] != after[name])


def assert_refused(world: World, case: Case, who: str, values: dict[str, Any], *, says: str) -> None:
    """Refused with 403 and a sentence containing `says` through both doors of the case, and
    the database exactly as before."""
    before = snapshot(world.app)
    for door in doors(case):
        message = refusal_sentence(send(world, case, who, values, door), door)
        assert says in message, f"{case.endpoint} via {door}: {message!r} does not say {says!r}"
    assert changed_tables(before, snapshot(world.app)) == [], f"{case.endpoint} changed the database when refused"


def assert_allowed(world: World, case: Case, who: str, values: dict[str, Any], door: str) -> None:
    """Allowed, and the table the route exists to change changed. Through the first door the
    exact status is checked; htmx answers differ per view (a panel, a redirect header, …)."""
    before = snapshot(world.app)
    response = send(world, case, who, values, door)
    if door == doors(case)[0]:
        assert response.status_code == case.ok, f"{case.endpoint}: {response.status_code} {response.text[:400]}"
    else:
        assert response.status_code < 400, f"{case.endpoint} via {door}: {response.status_code} {response.text[:400]}"
    assert case.writes in changed_tables(before, snapshot(world.app)), f"{case.endpoint} via {door} changed nothing"
    if case.to_state:
        assert world.release_state(values["release"]) == case.to_state


def needs(permission: str, environment: str | None = ENV_PATH) -> str:
    """What the refusal of require_permission says."""
    where = f" on {environment}" if environment else ""
    return f"\u201c{PERMISSIONS[permission]}\u201d permission{where} to do this"


REASON = "the payment service is down"


def email_link(world: World, who: str, action: str, release_id: int) -> str:
    """An Approve or Reject link as mailed to `who`."""
    from webapp.notify import email_links

    with world.app.app_context():
        token = email_links.issue(world.user_id(who), release_id, action)
        db.session.commit()
    return token

