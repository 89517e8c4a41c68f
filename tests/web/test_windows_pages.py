"""The pages' side of change windows, freezes, emergency releases and reminders (issue 14): the
environment page's and the admin project page's boxes saved and refused beside the field, the
trigger page's own "Emergency release" button, how long a scheduled release waits on the
dashboard, and reminders in a release's audit trail. (More: test_windows_and_break_glass_pages.py.)"""
from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import release, state, trigger
from tests.web.pages_support import SETTINGS, field_error, settings_events, settings_form
from tests.web.test_windows_and_break_glass_pages import (
    FREEZE,
    PAGE,
    PLAIN,
    REASON,
    add_medic,
    scheduled,
    text_of,
    trigger_form,
)
from webapp.extensions import db
from webapp.models import Release, utcnow
from webapp.reconcile import reconcile

API_ENV = "/api/v1/projects/svc/environments/env"
WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}
BERLIN = {"days": ["mon", "tue", "wed", "thu"], "start": "09:00", "end": "16:00", "tz": "Europe/Berlin"}
WEEKEND = {"days": ["sat"], "start": "10:00", "end": "12:00", "tz": "UTC"}
YEAR_END = {"from": "2026-12-20T00:00:00Z", "to": "2027-01-04T00:00:00Z", "reason": "year-end freeze"}
YEAR_END_LINE = "2026-12-20T00:00:00Z 2027-01-04T00:00:00Z year-end freeze"


def textarea(page: str, name: str) -> str:
    return html.unescape(re.search(rf'<textarea name="{name}"[^>]*>([^<]*)</textarea>', page).group(1))


# -- the environment page's settings ---------------------------------------------------------------

def test_windows_freezes_emergencies_and_hours_are_saved_from_the_environment_page(api, web, new_environment):
    new_environment(PLAIN)
    client = web("admin")
    form = settings_form(change_windows="mon-thu 09:00-16:00 Europe/Berlin\r\nsat 10:00-12:00 UTC",
                         freezes=f"{YEAR_END_LINE}\r\n", allow_break_glass="on", break_glass_review_hours="48",
                         reminder_hours="2.5", csrf_token=client.csrf)
    asked = client.post(SETTINGS, data=form)
    assert asked.status_code == 409  # emergency releases and longer reviews weaken the gate: asked first
    assert "Emergency releases may skip the hook, the approvals and the windows." in asked.text
    assert api("member").get(API_ENV).json["allow_break_glass"] is False

    response = client.post(SETTINGS, data={**form, "confirm_weakening": "1"})
    assert response.status_code == 303, response.text
    saved = api("member").get(API_ENV).json
    assert saved["change_windows"] == [BERLIN, WEEKEND] and saved["freezes"] == [YEAR_END]
    assert (saved["allow_break_glass"], saved["break_glass_review_hours"], saved["reminder_hours"]) == (True, 48, 2.5)
    page = client.get(PAGE).text
    assert textarea(page, "change_windows") == "mon,tue,wed,thu 09:00-16:00 Europe/Berlin\nsat 10:00-12:00 UTC"
    assert textarea(page, "freezes") == YEAR_END_LINE
    assert re.search(r'name="allow_break_glass"[^>]*checked', page)
    assert 'id="setting-reminder_hours" type="number" min="0.01" step="any" inputmode="decimal" value="2.5"' in page

    for typed, stored in (("always", []), ("", None)):  # always open; the project's windows
        form = settings_form(change_windows=typed, freezes="", allow_break_glass="on", break_glass_review_hours="48",
                             reminder_hours="", confirm_weakening="1", csrf_token=client.csrf)
        assert client.post(SETTINGS, data=form).status_code == 303
        saved = api("member").get(API_ENV).json
        assert (saved["change_windows"], saved["freezes"], saved["reminder_hours"]) == (stored, [], None)


@pytest.mark.parametrize("field, typed, sentence", [
    ("change_windows", "mon-fri 09:00 Europe/Berlin",
     "Change windows, line 1: write a window as days, hours and a time zone, e.g. mon-fri 09:00-16:00 "
     "Europe/Berlin (or always)."),
    ("change_windows", "mon 09:00-16:00 UTC\nmonday 09:00-16:00 UTC", "Change windows, line 2: days are mon, tue"),
    ("change_windows", "mon 09:00-16:00 Mars/Olympus", "tz must be a time zone name like Europe/Berlin or UTC."),
    ("change_windows", "mon 16:00-09:00 UTC", "start must be before end on the same day"),
    ("freezes", "2026-12-20T00:00:00Z year-end", "Freezes, line 1: write a freeze as its start, its end (UTC) and why"),
    ("freezes", "2026-12-20 2027-01-04 year-end", "from must be a UTC time like 2026-12-20T00:00:00Z."),
    ("freezes", "2027-01-04T00:00:00Z 2026-12-20T00:00:00Z backwards", "from must be before to."),
    ("break_glass_review_hours", "0", "between"),
    ("reminder_hours", "soon", "must be a number of hours, or empty for none."),
])
def test_a_bad_window_freeze_or_number_is_refused_beside_its_field_and_nothing_is_written(
        app, api, web, new_environment, field, typed, sentence):
    new_environment(PLAIN)
    client = web("admin")
    before, events = api("member").get(API_ENV).json, settings_events(app)
    form = settings_form(release_stream="OTHER", change_windows="always", freezes=YEAR_END_LINE,
                         break_glass_review_hours="24", reminder_hours="3", csrf_token=client.csrf)
    response = client.post(SETTINGS, data={**form, field: typed, "confirm_weakening": "1"})
    assert response.status_code == 422
    assert sentence in html.unescape(field_error(response.text, field))
    assert [name for name in ("change_windows", "freezes", "break_glass_review_hours", "reminder_hours")
            if field_error(response.text, name)] == [field]  # beside that field alone
    if field in ("change_windows", "freezes"):
        assert textarea(response.text, field) == typed  # what was typed comes back to be corrected
    assert api("member").get(API_ENV).json == before and settings_events(app) == events


# -- the admin project page ------------------------------------------------------------------------

def project_of(api) -> dict:
    [project] = api("member").get("/api/v1/projects").json["items"]
    return project


def project_form(client, api, **fields) -> dict:
    project = project_of(api)
    return {"csrf_token": client.csrf, "repo": project["repo"], "branch": project["branch"], "hook_ref": "",
            "web_url_template": "", **fields}


def admin_error(page: str, field: str) -> str:
    found = re.search(rf'id="edit-{field}-error">([^<]*)<', page)
    return html.unescape(found.group(1)) if found else ""


def test_the_admin_project_page_saves_windows_and_freezes_and_refuses_bad_lines_beside_them(
        app, api, web, new_environment):
    new_environment(PLAIN)
    client = web("admin")
    response = client.post("/admin/projects/svc", data=project_form(
        client, api, change_windows="mon-thu 09:00-16:00 Europe/Berlin\r\nsat 10:00-12:00 UTC",
        freezes=YEAR_END_LINE))
    assert response.status_code == 302, response.text
    saved = project_of(api)
    assert saved["change_windows"] == [BERLIN, WEEKEND] and saved["freezes"] == [YEAR_END]
    page = client.get("/admin/projects/svc").text
    assert ">mon,tue,wed,thu 09:00-16:00 Europe/Berlin\nsat 10:00-12:00 UTC</textarea>" in page
    assert f">{YEAR_END_LINE}</textarea>" in page
    assert api("member").get(API_ENV).json["window"] is not None  # the environment has none of its own

    for fields, field, sentence in (
            ({"change_windows": "weekdays 09:00-16:00 UTC"}, "change_windows", "Change windows, line 1: days are"),
            ({"change_windows": "mon 09:00-16:00 Nowhere/Atlantis"}, "change_windows", "time zone name"),
            ({"freezes": "2026-12-20T00:00:00Z"}, "freezes", "Freezes, line 1: write a freeze"),
            ({"freezes": "2026-12-20T00:00:00Z 2027-01-04T00:00:00Z  "}, "freezes", "write a freeze")):
        refused = client.post("/admin/projects/svc", data=project_form(
            client, api, **{"change_windows": "always", "freezes": "", "branch": "other", **fields}))
        assert refused.status_code == 422
        assert sentence in admin_error(refused.text, field), refused.text
        assert project_of(api) == saved  # nothing written, the branch neither

    response = client.post("/admin/projects/svc", data=project_form(client, api, change_windows="", freezes=""))
    assert response.status_code == 302
    saved = project_of(api)
    assert (saved["change_windows"], saved["freezes"]) == ([], [])  # a project's empty box: always open


# -- the trigger page's emergency button --------------------------------------------------------------

def test_an_emergency_release_has_a_button_of_its_own_after_the_trigger_button(web, new_environment, people):
    new_environment(PLAIN, allow_break_glass=True)
    add_medic(people)
    page = web("medic").get("/trigger").text
    form = re.search(r"<form method=\"post\" action=\"/trigger\".*?</form>", page, re.S).group(0)
    buttons = re.findall(r'<button type="submit"([^>]*)>([^<]+)</button>', form)
    # Trigger release first: Enter in a field presses it, so breaking glass is always a click of its own
    assert [label for _, label in buttons] == ["Trigger release", "Emergency release"]
    assert 'class="button danger" id="emergency-release" name="break_glass" value="on"' in buttons[1][0]
    # a reason too short for an emergency never stops a normal trigger in the browser (the server judges it)
    assert "formnovalidate" in buttons[0][0] and "formnovalidate" not in buttons[1][0]
    assert 'type="checkbox" name="break_glass"' not in page
    assert "press Emergency release instead of Trigger release" in text_of(page, "emergency")
    assert "Emergency release</button>" not in web("dev").get("/trigger").text


def test_the_emergency_button_triggers_an_emergency_release_and_the_trigger_button_a_normal_one(
        api, web, new_environment, people):
    new_environment(WAITS, allow_break_glass=True)
    add_medic(people)
    client = web("medic")
    urgent = client.post("/trigger", data=trigger_form(client, REASON))  # break_glass=on: the button pressed
    assert urgent.status_code == 303
    made = release(api, int(urgent.location.rsplit("/", 1)[1]))
    assert made["break_glass"]["reason"] == REASON and made["state"] == "IN_PROGRESS"
    plain = client.post("/trigger", data={**trigger_form(client, None), "break_glass_reason": REASON})
    assert plain.status_code == 303
    assert release(api, int(plain.location.rsplit("/", 1)[1]))["break_glass"] is None
    short = client.post("/trigger", data=trigger_form(client, "too short"))
    assert short.status_code == 422
    assert ">too short</textarea>" in short.text and 'id="emergency-release"' in short.text  # press it again
    forged = client.post("/trigger", data={**trigger_form(client, REASON), "csrf_token": "forged"})
    assert forged.status_code in (400, 403)


# -- a scheduled release on the dashboard ---------------------------------------------------------

def test_the_dashboard_says_how_long_a_scheduled_release_waits(app, api, web, new_environment):
    release_id = scheduled(api, new_environment)
    with app.app_context():  # half a minute from the boundaries, however slow the machine
        db.session.execute(sa.update(Release).where(Release.id == release_id).values(
            scheduled_until=utcnow() + timedelta(hours=14, minutes=30, seconds=30)))
        db.session.commit()
    client = web("member")
    line = re.search(r'<li class="waiting">(.*?)</li>', client.get("/").text, re.S).group(1)
    assert re.search(r"year-end freeze \(<time datetime=\"[^\"]+Z\" title=\"[^\"]+ UTC\" "
                     r"data-relative=\"precise\">in 14 h 30 min</time>\)</span>", line), line
    note = text_of(client.get(f"/releases/{release_id}").text, "scheduled-note")
    assert "year-end freeze (in 14 h 30 min)." in note  # the release page says the same, in the same words


def test_a_scheduled_release_without_a_known_end_shows_no_time_on_the_dashboard(app, api, web, new_environment):
    release_id = scheduled(api, new_environment)
    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == release_id).values(scheduled_until=None))
        db.session.commit()
    line = re.search(r'<li class="waiting">(.*?)</li>', web("member").get("/").text, re.S).group(1)
    assert f"{FREEZE['reason']}</span>" in line and 'data-relative="precise"' not in line


# -- reminders in the audit trail -----------------------------------------------------------------

def test_each_reminder_is_a_row_of_the_release_pages_audit_trail(app, api, web, new_environment, run_jobs):
    new_environment(WAITS, reminder_hours=2)
    release_id = trigger(api, "dev")
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    with app.app_context():
        since = db.session.get(Release, release_id).pending_since
        assert reconcile(since + timedelta(hours=2, minutes=30))["reminded"] == [release_id]
        assert reconcile(since + timedelta(hours=4, minutes=30))["reminded"] == [release_id]
    page = web("member").get(f"/releases/{release_id}").text
    trail = re.search(r'<table class="audit stacks">.*?</table>', page, re.S).group(0)
    rows = [[" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", trail, re.S)[1:]]
    reminded = [row[1:] for row in rows if row[2] == "reminder"]
    assert reminded == [["system via system", "reminder", "reminder: waiting for approval for 2 h"],
                        ["system via system", "reminder", "reminder: waiting for approval for 4 h"]], rows
