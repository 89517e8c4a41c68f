"""Every route that changes state is gated by require_permission (SPEC §6).

tests/web/test_permission_enforcement.py takes over from here: it has one case per gated route
(checked against the url_map with this file's STATE_CHANGING and UNGATED) and proves that
each one refuses, and allows, what its permission says, through the API and the pages.
"""
from __future__ import annotations

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Routes that change state without a permission, each with the reason.
UNGATED = {
    "auth.sign_in": "signing in is how a user gets permissions",
    "auth.sign_out": "anyone may end their own session",
    "admin.create_token": "a user manages only their own API tokens",
    "admin.revoke_token": "a user manages only their own API tokens",
    "admin.create_slack_code": "a user links only their own Slack users",
    "admin.unlink_slack": "a user unlinks only their own Slack users",
    # Slack's requests have no session: each is signed with SLACK_SIGNING_SECRET instead (401 if
    # not), and acts as the linked user through releases.approve / reject, which check permissions.
    "slack.interactions": "signed by Slack; decisions are checked as the linked user (notify/slack_links.py)",
    "slack.commands": "signed by Slack; /releasegate link needs a one-time code of the user it links",
}


def test_every_state_changing_route_requires_a_permission(app):
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.methods & STATE_CHANGING or rule.endpoint in UNGATED or rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        if not getattr(view, "required_permission", None):
            missing.append(f"{sorted(rule.methods & STATE_CHANGING)} {rule.rule} ({rule.endpoint})")
    assert missing == [], "routes that change state without require_permission:\n" + "\n".join(missing)


def test_the_audit_sees_the_api_routes(app):
    gated = {rule.endpoint for rule in app.url_map.iter_rules()
             if getattr(app.view_functions[rule.endpoint], "required_permission", None)}
    assert {"api.trigger_release", "api.approve", "api.reject", "api.cancel", "api.abort_release", "api.finish",
            "api.update_environment", "api.create_project", "api.put_variable"} <= gated


def test_a_state_changing_api_call_with_neither_token_nor_session_is_told_to_sign_in(app):
    """401 with the sentence that says what to send, not 400 for a CSRF token nobody could have."""
    client = app.test_client()
    for method, path in (("post", "/api/v1/projects"), ("delete", "/api/v1/groups/dba")):
        response = getattr(client, method)(path, json={})
        assert response.status_code == 401, (path, response.text)
        assert response.json["error"] == "Sign in or send an API token (Authorization: Bearer <token>)."


def test_a_route_gated_by_a_permission_that_does_not_exist_fails_when_it_is_declared():
    """A misspelt permission would gate a route by a name no grant can hold; it is refused at
    import, before any request."""
    import pytest

    from webapp.permissions import require_permission

    with pytest.raises(ValueError, match="Unknown permission 'approve_releases'"):
        require_permission("approve_releases")
    # and a known one is what the route audit above reads off the view
    assert require_permission("approve_release")(lambda: None).required_permission == "approve_release"
