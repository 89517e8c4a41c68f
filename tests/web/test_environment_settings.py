"""The environment page's settings and variables forms, per persona: saving, refusing beside the
field, audit, and secrets that never come back."""
from __future__ import annotations

import html
import re

import sqlalchemy as sa

from tests.helpers import state, trigger
from tests.web.pages_support import (
    API_ENV,
    HTMX,
    PAGE,
    PLAIN,
    SECRET,
    SETTINGS,
    VARIABLES,
    WAITS,
    environment_row,
    field_error,
    settings_events,
    settings_form,
)
from webapp.extensions import db
from webapp.models import AuditEvent, Variable

# -- settings -----------------------------------------------------------------------------------

def test_only_people_who_manage_the_environment_see_the_settings_form(app, web, people, new_environment):
    new_environment(PLAIN)
    people.add("keeper", "manage_environments", environment=environment_row(app))
    for persona in ("admin", "keeper"):
        page = web(persona).get(PAGE).text
        assert f'action="{SETTINGS}"' in page and f'action="{VARIABLES}"' in page
    for persona in ("member", "dev"):
        page = web(persona).get(PAGE).text
        assert f'action="{SETTINGS}"' not in page and f'action="{VARIABLES}"' not in page
        assert "Release stream" in page and "Hook timeout (seconds)" in page  # read-only facts


def test_saving_settings_changes_the_environment_and_is_audited(app, api, web, people, new_environment):
    new_environment(PLAIN)
    people.add("keeper", "manage_environments", environment=environment_row(app))
    client = web("keeper")
    form = settings_form(release_stream="QA2", mode="serial", allow_self_approval="on", confirm_weakening="1",
                         hook_timeout_seconds="120", approval_timeout_hours="1.5",
                         release_command="echo one\r\necho two", csrf_token=client.csrf)
    response = client.post(SETTINGS, data=form)
    assert response.status_code == 303 and response.location.endswith(f"{PAGE}#settings")
    saved = api("member").get(API_ENV).json
    assert (saved["release_stream"], saved["approval_workflow"], saved["allow_self_approval"]) == ("QA2", False, True)
    assert (saved["hook_timeout_seconds"], saved["approval_timeout_hours"]) == (120, 1.5)
    assert saved["release_command"] == "echo one\necho two" and saved["hook_ref"] is None
    assert saved["mode"] == "serial"
    events = api("member").get(f"{API_ENV}/events").json["items"]
    latest = events[0]
    assert (latest["by"], latest["via"], latest["action"]) == ("keeper", "ui", "settings")
    assert latest["details"]["changes"]["release_stream"] == {"old": "QA", "new": "QA2"}
    page = client.get(PAGE).text
    assert "Settings saved" in page
    history = re.search(r'<section id="settings-history".*?</section>', page, re.S).group(0)
    assert "keeper" in history and "<code>QA</code> → <code>QA2</code>" in history
    assert "Approval workflow: on → off" in history


def test_saving_unchanged_settings_changes_nothing_and_says_so(app, web, new_environment):
    new_environment(PLAIN)
    before = settings_events(app)
    client = web("admin")
    response = client.post(SETTINGS, data=settings_form(csrf_token=client.csrf), follow_redirects=True)
    assert response.status_code == 200 and "Nothing changed" in response.text
    assert settings_events(app) == before


def test_the_mode_is_one_choice_of_three_saved_as_the_two_switches(app, api, web, new_environment):
    new_environment(PLAIN)
    client = web("admin")
    page = client.get(PAGE).text
    assert re.findall(r'<input type="radio" name="mode" value="(\w+)"', page) == ["approval", "serial", "parallel"]
    assert re.search(r'name="mode" value="approval"[^>]*checked', page)
    assert 'name="approval_workflow"' not in page and 'name="parallel_releases"' not in page
    for mode, switches in (("parallel", (False, True)), ("serial", (False, False)), ("approval", (True, False))):
        response = client.post(SETTINGS, data=settings_form(mode=mode, confirm_weakening="1", csrf_token=client.csrf))
        assert response.status_code == 303, response.text
        saved = api("member").get(API_ENV).json
        assert (saved["mode"], (saved["approval_workflow"], saved["parallel_releases"])) == (mode, switches)
        assert re.search(rf'name="mode" value="{mode}"[^>]*checked', client.get(PAGE).text)


def test_a_form_without_a_known_mode_is_refused_beside_the_choice_and_changes_nothing(
        app, api, web, new_environment):
    new_environment(PLAIN)
    before = settings_events(app)
    client = web("admin")
    for mode in (None, "both"):
        response = client.post(SETTINGS, data=settings_form(mode=mode, release_stream="OTHER", csrf_token=client.csrf))
        assert response.status_code == 422
        assert "Choose one mode" in field_error(response.text, "mode")
    saved = api("member").get(API_ENV).json
    assert (saved["parallel_releases"], saved["approval_workflow"], saved["release_stream"]) == (False, True, "QA")
    assert settings_events(app) == before


def test_the_api_keeps_its_two_switches_and_refuses_both_on(api, new_environment):
    new_environment(PLAIN)
    response = api("admin").patch(API_ENV, json={"parallel_releases": True})
    assert response.status_code == 409 and response.json["field"] == "parallel_releases"
    assert api("admin").patch(API_ENV, json={"approval_workflow": False, "parallel_releases": True}).status_code == 200


def test_parallel_releases_while_a_release_waits_for_approval_shows_the_reason(
        app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    pending = trigger(api)
    run_jobs()
    assert state(api, pending) == "PENDING_APPROVAL"
    client = web("admin")
    response = client.post(SETTINGS, data=settings_form(mode="parallel", csrf_token=client.csrf))
    assert response.status_code == 409  # refused before any confirmation is asked for
    assert "waiting for approval" in field_error(response.text, "mode")
    assert "Save anyway" not in response.text
    saved = api("member").get(API_ENV).json
    assert (saved["approval_workflow"], saved["parallel_releases"]) == (True, False)
    assert state(api, pending) == "PENDING_APPROVAL"


# -- weakening the gate asks first -------------------------------------------------------------

def resubmitted(text: str) -> dict[str, str]:
    """The hidden fields of the "Save anyway" form."""
    box = re.search(r'<div class="message message-warning weakening".*?</form>', text, re.S).group(0)
    return {html.unescape(name): html.unescape(value)
            for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', box)}


def test_a_weakening_change_asks_for_confirmation_and_saves_nothing_until_confirmed(
        app, api, web, new_environment):
    new_environment(PLAIN)
    before = settings_events(app)
    client = web("admin")
    typed = settings_form(mode="serial", release_command='echo "one"\r\necho two', allow_self_approval="on",
                          csrf_token=client.csrf)
    response = client.post(SETTINGS, data=typed)
    assert response.status_code == 409
    text = html.unescape(response.text)
    assert "These settings weaken the gate. Nothing is saved yet." in text
    for sentence in ("The approval workflow is turned off", "People may approve releases they triggered",
                     "The release command changes"):
        assert sentence in text
    assert re.search(r'name="mode" value="serial"[^>]*checked', response.text)  # the form keeps what was sent
    assert settings_events(app) == before
    assert api("member").get(API_ENV).json["mode"] == "approval"
    again = resubmitted(response.text)
    assert again.pop("confirm_weakening") == "1"
    token = again.pop("csrf_token")  # a fresh, time-stamped token: the form below proves it is accepted
    assert again == {name: value for name, value in typed.items() if name != "csrf_token"}
    confirmed = client.post(SETTINGS, data={**again, "confirm_weakening": "1", "csrf_token": token})
    assert confirmed.status_code == 303
    saved = api("member").get(API_ENV).json
    assert (saved["mode"], saved["allow_self_approval"], saved["release_command"]) == (
        "serial", True, 'echo "one"\necho two')
    assert last_weakening(app) == ["allow_self_approval", "approval_workflow", "release_command"]


def test_fewer_approvals_ask_first_but_a_stricter_change_saves_at_once(app, api, web, new_environment):
    new_environment(PLAIN)
    client = web("admin")
    stricter = client.post(SETTINGS, data=settings_form(approval_rules="two * 2", authors_may_not_approve="on",
                                                         csrf_token=client.csrf))
    assert stricter.status_code == 303
    weaker = client.post(SETTINGS, data=settings_form(approval_rules="two * 1", csrf_token=client.csrf))
    assert weaker.status_code == 409
    text = html.unescape(weaker.text)
    assert "Fewer approvals are needed: approval rule two" in text
    assert "People who wrote or committed a change may approve it." in text
    saved = api("member").get(API_ENV).json
    assert (saved["approval_rules"][0]["approvals"], saved["authors_may_not_approve"]) == (2, True)
    # Turning the approval workflow back on is no weakening: saved at once.
    assert client.post(SETTINGS, data=settings_form(mode="serial", approval_rules="two * 2",
                                                    authors_may_not_approve="on", confirm_weakening="1",
                                                    csrf_token=client.csrf)).status_code == 303
    assert client.post(SETTINGS, data=settings_form(approval_rules="two * 2", authors_may_not_approve="on",
                                                    csrf_token=client.csrf)).status_code == 303
    assert api("member").get(API_ENV).json["mode"] == "approval"


def last_weakening(app) -> list[str]:
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "settings")
                                   .order_by(AuditEvent.id.desc())).first()
        return event.details["weakens_gate"]


def test_errors_are_listed_at_the_top_of_the_form_with_links_to_their_fields(app, web, new_environment):
    new_environment(PLAIN)
    client = web("admin")
    response = client.post(SETTINGS, data=settings_form(release_stream="  ", hook_timeout_seconds="0",
                                                         csrf_token=client.csrf))
    assert response.status_code == 422
    summary = re.search(r'<div class="message message-error error-summary".*?</div>', response.text, re.S).group(0)
    assert "Nothing was saved." in summary
    links = re.findall(r'<a href="#(setting-\w+)">([^<]*)</a>', summary)
    assert [target for target, _ in links] == ["setting-release_stream", "setting-hook_timeout_seconds"]
    assert links[0][1] == "Release stream: Release stream must not be empty."
    for target, _ in links:
        assert f'id="{target}"' in response.text
    assert "error-summary" not in client.get(PAGE).text


def test_invalid_settings_show_the_message_next_to_each_field(app, api, web, new_environment):
    new_environment(PLAIN)
    client = web("admin")
    response = client.post(SETTINGS, data=settings_form(release_stream="  ", hook_timeout_seconds="0",
                                                         release_timeout_seconds="soon",
                                                         approval_timeout_hours="nan", csrf_token=client.csrf))
    assert response.status_code == 422
    assert field_error(response.text, "release_stream") == "Release stream must not be empty."
    assert field_error(response.text, "hook_timeout_seconds") == "Hook timeout (seconds) must be between 1 and 86400."
    assert "whole number" in field_error(response.text, "release_timeout_seconds")
    assert "number of hours" in field_error(response.text, "approval_timeout_hours")
    assert api("member").get(API_ENV).json["hook_timeout_seconds"] == 300


def test_the_address_a_refused_save_leaves_in_the_bar_opens_the_form(app, web, new_environment):
    """After a refused save the address bar reads …/settings: opening it again leads to the form,
    not to a 405 page. The same for the variables form."""
    new_environment(PLAIN)
    client = web("admin")
    refused = client.post(SETTINGS, data=settings_form(release_stream="  ", csrf_token=client.csrf))
    assert refused.status_code == 422
    for address, anchor in ((SETTINGS, "settings"), (SETTINGS.replace("/settings", "/variables"), "variables")):
        again = client.get(address)
        assert again.status_code == 303
        assert again.headers["Location"].endswith(f"/projects/svc/environments/env#{anchor}")
        landed = client.get(again.headers["Location"])
        assert landed.status_code == 200
        assert f"Nothing was saved from that address: the {anchor} form below shows what is saved now." in landed.text
    assert 'name="release_stream" id="setting-release_stream" value="QA"' in landed.text  # the saved value


def test_a_member_forging_a_settings_post_gets_403_and_nothing_changes(app, api, web, people, new_environment):
    new_environment(PLAIN)
    for persona in ("member", "dev"):
        client = web(persona)
        response = client.post(SETTINGS, data=settings_form(release_stream="HIJACKED", csrf_token=client.csrf))
        assert response.status_code == 403 and "Manage environments" in response.text
    anonymous = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', anonymous.get("/sign-in").text).group(1)
    response = anonymous.post(SETTINGS, data=settings_form(release_stream="HIJACKED", csrf_token=token))
    assert response.status_code == 302 and "/sign-in" in response.location
    assert api("member").get(API_ENV).json["release_stream"] == "QA"


# -- variables ----------------------------------------------------------------------------------

def test_managers_add_change_and_delete_variables(app, api, web, people, new_environment):
    new_environment(PLAIN)
    people.add("keeper", "manage_environments", environment=environment_row(app))
    client = web("keeper")
    response = client.post(VARIABLES, data={"name": "REGION", "value": "eu-west-1", "for_hooks": "on",
                                            "csrf_token": client.csrf})
    assert response.status_code == 303 and response.location.endswith(f"{PAGE}#variables")
    page = client.get(PAGE).text
    assert "Variable REGION added" in page and '<code class="variable-value">eu-west-1</code>' in page
    edit = client.get(f"{PAGE}?edit=REGION").text
    assert 'name="name" value="REGION"' in edit and ">eu-west-1</textarea>" in edit
    client.post(VARIABLES, data={"name": "REGION", "value": "us-east-2", "csrf_token": client.csrf})
    variables = api("member").get(API_ENV).json["variables"]
    assert variables == [{"name": "REGION", "value": "us-east-2", "secret": False, "for_hooks": False}]
    bad = client.post(VARIABLES, data={"name": "PATH", "value": "/tmp", "csrf_token": client.csrf})
    assert bad.status_code == 422 and "set by Releasegate itself" in field_error(bad.text, "variable-name")
    deleted = client.post(f"{VARIABLES}/REGION/delete", headers={**HTMX, "X-CSRFToken": client.csrf})
    assert deleted.status_code == 200 and deleted.text.lstrip().startswith('<section id="variables"')
    assert "Variable REGION deleted" in deleted.text and "<code>REGION</code>" not in deleted.text
    assert '<section id="settings-history"' in deleted.text and 'hx-swap-oob="true"' in deleted.text
    plain = client.post(VARIABLES, data={"name": "ZONE", "value": "b", "csrf_token": client.csrf})
    assert plain.status_code == 303
    plain = client.post(f"{VARIABLES}/ZONE/delete", data={"csrf_token": client.csrf})
    assert plain.status_code == 303 and plain.location.endswith(f"{PAGE}#variables")
    assert api("member").get(API_ENV).json["variables"] == []
    events = [e["reason"] for e in api("member").get(f"{API_ENV}/events").json["items"]]
    assert events[:5] == ["variable ZONE deleted", "variable ZONE created", "variable REGION deleted",
                          "variable REGION changed", "variable REGION created"]


def test_members_see_variables_but_forged_variable_posts_are_refused(app, api, web, new_environment):
    new_environment(PLAIN)
    admin = web("admin")
    admin.post(VARIABLES, data={"name": "REGION", "value": "eu-west-1", "csrf_token": admin.csrf})
    client = web("member")
    page = client.get(PAGE).text
    assert "eu-west-1" in page and "Delete" not in page and f"{VARIABLES}/REGION/delete" not in page
    assert client.post(VARIABLES, data={"name": "REGION", "value": "x", "csrf_token": client.csrf}).status_code == 403
    forged_delete = client.post(f"{VARIABLES}/REGION/delete", headers={**HTMX, "X-CSRFToken": client.csrf})
    assert forged_delete.status_code == 403 and forged_delete.headers["HX-Retarget"] == "#messages"
    anonymous = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', anonymous.get("/sign-in").text).group(1)
    response = anonymous.post(f"{VARIABLES}/REGION/delete", data={"csrf_token": token})
    assert response.status_code == 302 and "/sign-in" in response.location
    assert api("member").get(API_ENV).json["variables"][0]["value"] == "eu-west-1"


def test_a_secret_variable_value_never_appears_in_any_response(app, api, web, new_environment):
    new_environment(PLAIN)
    client = web("admin")
    responses = [client.post(VARIABLES, data={"name": "DB_PASSWORD", "value": SECRET, "secret": "on",
                                              "csrf_token": client.csrf}, follow_redirects=True)]
    assert responses[0].status_code == 200 and "Variable DB_PASSWORD added" in responses[0].text
    # An empty value keeps the secret while it stays secret ...
    responses.append(client.post(VARIABLES, data={"name": "DB_PASSWORD", "value": "", "secret": "on",
                                                  "for_hooks": "on", "csrf_token": client.csrf}))
    # ... but cannot make it visible; and a refused form never echoes a secret back.
    refused = client.post(VARIABLES, data={"name": "DB_PASSWORD", "value": "", "csrf_token": client.csrf})
    assert refused.status_code == 422 and "never shown" in field_error(refused.text, "variable-value")
    responses.append(refused)
    responses.append(client.post(VARIABLES, data={"name": "9BAD", "value": SECRET, "secret": "on",
                                                  "csrf_token": client.csrf}))
    assert responses[-1].status_code == 422
    with app.app_context():
        stored = db.session.scalar(sa.select(Variable).where(Variable.name == "DB_PASSWORD"))
        assert (stored.value, stored.secret, stored.for_hooks) == (SECRET, True, True)
    member = web("member")
    for reader in (client, member):
        for url in (PAGE, f"{PAGE}?edit=DB_PASSWORD", "/", "/fragments/dashboard?v=x",
                    "/fragments/projects/svc/environments/env?v=x", API_ENV, f"{API_ENV}/events"):
            responses.append(reader.get(url))
    page = member.get(PAGE).text
    assert "Secret, set" in page and "••••" in page
    for response in responses:
        assert SECRET not in response.get_data(as_text=True), response.request.path
