"""The permission rules that are not one permission per route (SPEC §6, §7).

Self-approval; a triggerer cancelling or withdrawing their own release; manage_users only for
all environments; a per-environment manage_environments that cannot create projects or
environments; and a deactivated user, refused every permission-checked action even while
holding grants, and even when deactivated while a request is under way.

The cases act in permission_cases' world (project shop with qa and prod, the fixtures'
personas); test_permission_enforcement.py holds the one case per gated route.
"""
from __future__ import annotations

import html
import json
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import CHANGE, trigger
from tests.web.permission_cases import (
    API_ENV,
    CASES,
    ENV,
    ENV_PATH,
    PAGE_ENV,
    PROJECT,
    SETTINGS_FORM,
    World,
    build,
    changed_tables,
    email_link,
    needs,
    refusal_sentence,
    send,
    snapshot,
    world,  # noqa: F401 - fixtures, used by name
)
from webapp import releases
from webapp.extensions import db
from webapp.models import Release, User

# -- self-approval -------------------------------------------------------------------------------------


def decide(world: World, who: str, door: str, action: str, release_id: int, token: str | None = None):
    """Approve or reject through the API, the release page or the mailed link (`token`)."""
    if door == "api":
        return world.api(who).post(f"/api/v1/releases/{release_id}/{action}", json={"comment": "mine"})
    client = world.browser(who)
    address = f"/email/links/{token}" if door == "email" else f"/releases/{release_id}/{action}"
    return client.post(address, data={"csrf_token": client.csrf, "comment": "mine"})


@pytest.mark.parametrize("who", ["approver", "admin"])
@pytest.mark.parametrize("door", ["api", "page", "email"])
def test_nobody_decides_their_own_release_unless_the_environment_allows_self_approval(world, who, door):
    release_id = trigger(world.api, who, path=ENV_PATH)
    world.record_hook(release_id, 2)
    links = {action: email_link(world, who, action, release_id) for action in ("approve", "reject")}
    before = snapshot(world.app)
    for action in ("approve", "reject"):
        response = decide(world, who, door, action, release_id, links[action])
        assert response.status_code == 403, response.text[:400]
        text = response.json["error"] if door == "api" else html.unescape(response.text)
        assert "You triggered this release, so someone else must approve or reject it" in text
    assert changed_tables(before, snapshot(world.app)) == []  # the links were not used up either
    assert world.release_state(release_id) == "PENDING_APPROVAL"

    assert world.api("admin").patch(API_ENV, json={"allow_self_approval": True}).status_code == 200
    response = decide(world, who, door, "approve", release_id, links["approve"])
    assert response.status_code in (200, 303), response.text[:400]
    assert world.release_state(release_id) == "APPROVED"


# -- a triggerer's own releases ------------------------------------------------------------------------

def cancel(world: World, who: str, door: str, release_id: int):
    if door == "api":
        return world.api(who).post(f"/api/v1/releases/{release_id}/cancel")
    client = world.browser(who)
    return client.post(f"/releases/{release_id}/cancel", data={"csrf_token": client.csrf})


@pytest.mark.parametrize("door", ["api", "page"])
def test_a_triggerer_cancels_and_withdraws_their_own_releases_without_cancel_release(world, door):
    world.grant("member", "trigger_release", ENV)  # and nothing else
    holder = trigger(world.api, "member", path=ENV_PATH)
    queued = trigger(world.api, "member", path=ENV_PATH)
    assert world.release_state(queued) == "QUEUED"
    assert cancel(world, "member", door, queued).status_code in (200, 303)
    assert world.release_state(queued) == "CANCELLED"

    world.record_hook(holder, 2)
    assert cancel(world, "member", door, holder).status_code in (200, 303)  # withdraw
    assert world.release_state(holder) == "CANCELLED"


@pytest.mark.parametrize("door", ["api", "page"])
def test_a_triggerer_cannot_abort_their_own_release_or_cancel_someone_elses(world, door):
    world.grant("member", "trigger_release", ENV)  # and nothing else
    mine = trigger(world.api, "member", path=ENV_PATH)
    world.record_hook(mine, 0)  # running: aborting needs cancel_release, one's own release or not
    others = trigger(world.api, "dev", path=ENV_PATH)  # queued behind it
    before = snapshot(world.app)
    for action, release_id in (("abort", mine), ("cancel", others)):
        if door == "api":
            response = world.api("member").post(f"/api/v1/releases/{release_id}/{action}")
        else:
            browser = world.browser("member")
            response = browser.post(f"/releases/{release_id}/{action}", data={"csrf_token": browser.csrf})
        assert needs("cancel_release") in refusal_sentence(response, "token" if door == "api" else "form")
    assert changed_tables(before, snapshot(world.app)) == []
    assert (world.release_state(mine), world.release_state(others)) == ("IN_PROGRESS", "QUEUED")


@pytest.mark.parametrize("who", ["canceller", "admin"])
@pytest.mark.parametrize("door", ["api", "page"])
def test_only_the_triggerer_withdraws_a_pending_release_even_with_cancel_release(world, who, door):
    release_id = build(world, "pending")["release"]  # dev's
    world.people.add("canceller", "cancel_release")
    before = snapshot(world.app)
    sentence = refusal_sentence(cancel(world, who, door, release_id), "token" if door == "api" else "form")
    assert "Only the person who triggered a pending release can withdraw it" in sentence
    assert changed_tables(before, snapshot(world.app)) == []
    assert world.release_state(release_id) == "PENDING_APPROVAL"


# -- manage_users only for all environments; manage_environments per environment ------------------------

def test_manage_users_cannot_be_granted_for_one_environment(world):
    admin = world.browser("admin")
    member = world.user_id("member")
    with world.app.app_context():
        prod_id = world.environment(ENV).id
    before = snapshot(world.app)
    response = admin.post(f"/admin/users/{member}/grants", data={"csrf_token": admin.csrf,
                                                                  "permission": "manage_users",
                                                                  "environment": str(prod_id)})
    assert response.status_code == 422
    assert "exists only for all environments" in html.unescape(response.text)
    result = world.app.test_cli_runner().invoke(args=["users", "grant", "member", "manage_users",
                                                      "--environment", ENV_PATH])
    assert result.exit_code != 0 and "exists only for all environments" in result.output
    assert changed_tables(before, snapshot(world.app)) == []

    response = admin.post(f"/admin/users/{member}/grants", data={"csrf_token": admin.csrf,
                                                                  "permission": "manage_users", "environment": "all"})
    assert response.status_code == 302
    assert world.browser("member").get("/admin/users").status_code == 200


def test_manage_environments_for_one_environment_manages_it_but_creates_nothing(world):
    world.grant("member", "manage_environments", ENV)
    api, browser = world.api("member"), world.browser("member")
    before = snapshot(world.app)
    attempts = [api.post("/api/v1/projects", json={"name": "blog", "repo": world.repo}),
                api.post(f"/api/v1/projects/{PROJECT}/environments", json={"name": "stage", "release_stream": "S"})]
    for address, form in (("/admin/projects", {"name": "blog", "repo": world.repo, "branch": "main"}),
                          (f"/admin/projects/{PROJECT}/environments", {"name": "stage", "release_stream": "S"}),
                          (f"/admin/projects/{PROJECT}", {"repo": world.repo, "branch": "other"})):
        attempts.append(browser.post(address, data={**form, "csrf_token": browser.csrf}))
    for response in attempts:
        assert needs("manage_environments", None) in refusal_sentence(response, "token" if response.is_json else "form")
    assert changed_tables(before, snapshot(world.app)) == []

    # ... while prod itself, through either door, is theirs to manage
    assert api.patch(API_ENV, json={"hook_timeout_seconds": 100}).status_code == 200
    response = browser.post(f"{PAGE_ENV}/settings", data={**SETTINGS_FORM, "csrf_token": browser.csrf})
    assert response.status_code == 303
    with world.app.app_context():
        assert world.environment(ENV).hook_timeout_seconds == 120


# -- a deactivated user ----------------------------------------------------------------------------------

LEAVER_GRANTS = ("trigger_release", "approve_release", "cancel_release", "manage_environments")


def leaver_and_releases(world: World) -> tuple[int, int, int]:
    """leaver, holding every release permission and manage_environments for all environments, signed
    in with a browser and holding an API token; dev's release pending approval on prod and dev's
    release queued behind it. Returns (leaver's id, pending, queued)."""
    leaver = world.people.add("leaver", *LEAVER_GRANTS)
    pending = build(world, "pending")["release"]
    queued = trigger(world.api, "dev", path=ENV_PATH)
    assert world.browser("leaver").get("/").status_code == 200
    assert world.api("leaver").get(API_ENV).status_code == 200
    return leaver, pending, queued


def refused_actions(world: World, pending: int, queued: int) -> list[tuple[str, Any]]:
    """Every state machine entry point a permission gates, as (name, call) taking an Actor."""
    from webapp import accounts, environments

    def prod():
        return world.environment(ENV)

    return [
        ("approve", lambda actor: releases.approve(pending, actor, "ok")),
        ("reject", lambda actor: releases.reject(pending, actor, "no")),
        ("cancel", lambda actor: releases.cancel(queued, actor)),
        ("trigger", lambda actor: releases.trigger(prod(), actor, CHANGE)),
        ("update_environment", lambda actor: environments.update_environment(prod(), actor,
                                                                              {"hook_timeout_seconds": 120})),
        ("reset_password", lambda actor: accounts.reset_password(actor, db.session.get(User, world.user_id("dev")),
                                                                 "another-password-123")),
    ]


def test_a_deactivated_user_holding_grants_is_refused_every_permission_checked_action(world, tmp_path):
    """SPEC §6: deactivating ends the sessions and tokens; and every permission check refuses an
    inactive user whatever grants are still on record, so a door that names a user without signing
    in (the CLI's `releases trigger --as`, email and Slack links) or a request already past sign-in
    cannot act for them. Nothing changes."""
    from webapp.permissions import PermissionDenied
    from webapp.transactions import Actor

    leaver, pending, queued = leaver_and_releases(world)
    admin = world.browser("admin")
    assert admin.post(f"/admin/users/{leaver}/deactivate", data={"csrf_token": admin.csrf}).status_code == 302
    before = snapshot(world.app)

    token = world.api("leaver")
    for response in (token.post(f"/api/v1/releases/{pending}/approve", json={}),
                     token.post(f"/api/v1/releases/{pending}/reject", json={}),
                     token.post(f"/api/v1/releases/{queued}/cancel"),
                     token.post(f"{API_ENV}/releases", json={"resources": CHANGE}),
                     token.patch(API_ENV, json={"hook_timeout_seconds": 120})):
        assert response.status_code == 401, response.json
    browser = world.browser("leaver")  # the session leaver signed in with before
    for address in (f"/releases/{pending}/approve", f"/releases/{pending}/reject", f"/releases/{queued}/cancel"):
        response = browser.post(address, data={"csrf_token": browser.csrf, "comment": "ok"})
        assert response.status_code == 302 and "/sign-in" in response.location, response.status_code

    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps(CHANGE))
    result = world.app.test_cli_runner().invoke(args=["releases", "trigger", ENV_PATH, "--as", "leaver",
                                                      "--resources", str(changes)])
    assert result.exit_code != 0 and needs("trigger_release") in result.output, (result.output, result.exception)

    refused, actions = [], refused_actions(world, pending, queued)
    with world.app.app_context():
        for name, action in actions:
            user = db.session.get(User, leaver)
            assert not user.active and len(user.grants) == len(LEAVER_GRANTS)
            try:
                action(Actor(user, "cli"))
            except PermissionDenied:
                refused.append(name)
            db.session.rollback()
    assert refused == [name for name, _ in actions]
    assert changed_tables(before, snapshot(world.app)) == []
    assert (world.release_state(pending), world.release_state(queued)) == ("PENDING_APPROVAL", "QUEUED")


@pytest.mark.parametrize("door", ["token", "form"])
def test_a_user_deactivated_while_their_request_is_under_way_is_refused_when_it_acts(world, door, monkeypatch):
    """leaver's trigger got past sign-in and the route's decorator; then an admin's deactivation
    committed; the trigger's own transaction reads leaver again and refuses: 403, and nothing but
    the deactivation changed."""
    from webapp import accounts, transactions
    from webapp.transactions import Actor

    leaver, _pending, _queued = leaver_and_releases(world)
    write_transaction = transactions.write_transaction

    def deactivated_meanwhile() -> None:
        monkeypatch.setattr(transactions, "write_transaction", write_transaction)  # once
        with world.app.app_context():  # a session of its own, as another request's
            admin = db.session.scalar(sa.select(User).where(User.username == "admin"))
            accounts.deactivate_user(Actor(admin, "ui"), db.session.get(User, leaver))
        write_transaction()

    trigger_case = next(case for case in CASES if case.endpoint == (
        "api.trigger_release" if door == "token" else "trigger_page.trigger_submit"))
    before = snapshot(world.app)
    monkeypatch.setattr(transactions, "write_transaction", deactivated_meanwhile)
    response = send(world, trigger_case, "leaver", {}, door)
    assert needs("trigger_release") in refusal_sentence(response, door)
    assert transactions.write_transaction is write_transaction  # the deactivation came in between
    assert changed_tables(before, snapshot(world.app)) == ["api_tokens", "audit_events", "users"]  # it alone
    with world.app.app_context():
        assert not db.session.get(User, leaver).active
        assert db.session.scalar(sa.select(sa.func.count(Release.id)).where(
            Release.triggered_by_id == leaver)) == 0

