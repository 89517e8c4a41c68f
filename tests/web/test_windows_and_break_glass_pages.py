"""The pages for change windows and emergency (break-glass) releases: a scheduled release says
why it waits and can be aborted; an emergency release is marked in red until someone reviews it
on its page; the dashboard and the environment page list emergencies, overdue reviews and
environments where releases may not start; the trigger form triggers an emergency release.
(Browser tests: test_browser_break_glass.py.)"""
from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta

import sqlalchemy as sa

from tests.helpers import CHANGE, release, state, trigger
from tests.web.release_page_support import HX, panel_of, post, release_count
from webapp.extensions import db
from webapp.models import Environment, Release, User, utcnow
from webapp.views.pages import window_note
from webapp.views.web import relative
from webapp.windows import DAYS, Verdict

PLAIN = {"README.md": "no hook here\n"}
API_ENV = "/api/v1/projects/svc/environments/env"
PAGE = "/projects/svc/environments/env"
FREEZE = {"from": "2020-01-01T00:00:00Z", "to": "2099-01-01T00:00:00Z", "reason": "year-end freeze"}
FROZEN = "frozen until 2099-01-01T00:00:00Z \u2014 year-end freeze"
REASON = "checkout is down for every customer; the fix cannot wait"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/"}


def configure(api, **settings) -> None:
    response = api("admin").patch(API_ENV, json=settings)
    assert response.status_code == 200, response.json


def scheduled(api, new_environment, who: str = "approver", **settings) -> int:
    """A release of svc/env (no approval workflow, nothing to run) that waits, SCHEDULED."""
    new_environment(PLAIN, approval_workflow=False)
    configure(api, **({"freezes": [FREEZE]} | settings))
    release_id = trigger(api, who)
    assert state(api, release_id) == "SCHEDULED"
    return release_id


def closed_today() -> list[dict]:
    """A change window on every day but today (UTC): closed now, it opens tomorrow at 09:00."""
    today = DAYS[utcnow().weekday()]
    return [{"days": [day for day in DAYS if day != today], "start": "09:00", "end": "10:00", "tz": "UTC"}]


def add_medic(people, *extra: str) -> None:
    """medic may trigger emergency releases everywhere (and with `extra`, more)."""
    people.add("medic", "trigger_release", "break_glass", *extra)


def emergency(api, new_environment, people, run_jobs=None, *, medic_approves: bool = False) -> int:
    """medic's emergency release of svc/env (approval workflow on, nothing to run); finished when
    `run_jobs` is given, else still IN_PROGRESS, its apply not run yet."""
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}, allow_break_glass=True)
    add_medic(people, *(("approve_release",) if medic_approves else ()))
    release_id = trigger(api, "medic", break_glass={"reason": REASON})
    assert state(api, release_id) == "IN_PROGRESS"  # no hook, no approval
    if run_jobs is not None:
        run_jobs()
        assert state(api, release_id) == "SUCCEEDED"
    return release_id


def grant(app, username: str, permission: str, environment: str) -> None:
    """Give `username` `permission` on svc/`environment` alone."""
    from webapp.accounts import add_grant

    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == username))
        add_grant(user, permission, db.session.scalar(sa.select(Environment).where(Environment.name == environment)))


def set_review_due(app, release_id: int, moment: datetime) -> None:
    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == release_id).values(review_due_at=moment))
        db.session.commit()


def text_of(page: str, element_id: str) -> str:
    """The words of the element with `element_id` as a browser shows them: inline tags removed,
    the others read as a space, spaces folded."""
    start = page.index(f'id="{element_id}"')
    start = page.rindex("<", 0, start)
    tag = re.match(r"<(\w+)", page[start:]).group(1)
    depth, position = 0, start
    for match in re.finditer(rf"<(/?){tag}\b[^>]*>", page[start:]):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            position = start + match.end()
            break
    words = re.sub(r"</?(?:a|time|strong|em|code|span)\b[^>]*>", "", page[start:position])
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", words)).split())


def live_url(page: str) -> str | None:
    found = re.search(r'id="release-live" class="stack" hx-get="([^"]+)"', page)
    return found.group(1).replace("&amp;", "&") if found else None


# -- words and times ------------------------------------------------------------------------------

def test_relative_times_read_as_people_say_them():
    now = datetime(2026, 12, 3, 12, 0)
    assert relative(now + timedelta(seconds=30), now) == "in under a minute"
    assert relative(now + timedelta(minutes=25), now) == "in 25 min"
    assert relative(now + timedelta(hours=14, minutes=50), now) == "in 14 h"
    assert relative(now + timedelta(hours=47), now) == "in 47 h"
    assert relative(now + timedelta(days=3, hours=2), now) == "in 3 d"
    assert relative(now - timedelta(hours=3), now) == "3 h ago"
    assert relative(now - timedelta(seconds=5), now) == "under a minute ago"


def test_the_window_badge_names_a_freeze_or_when_the_window_opens():
    assert window_note(Verdict(True)) is None
    assert window_note(Verdict(False, FROZEN)) == "Frozen until 2099-01-01T00:00:00Z \u2014 year-end freeze"
    assert window_note(Verdict(False, "waiting for the change window: opens Tue 09:00 Europe/Berlin")) == (
        "Outside change window, opens Tue 09:00 Europe/Berlin")
    assert window_note(Verdict(False, "waiting for a change window; none will open")) == (
        "Outside change window; none will open")


# -- a scheduled release --------------------------------------------------------------------------

def test_a_release_in_a_freeze_says_why_it_waits_and_how_long_and_keeps_polling(api, web, new_environment):
    release_id = scheduled(api, new_environment)
    client = web("member")
    page = client.get(f"/releases/{release_id}").text
    assert 'class="state state-SCHEDULED">Scheduled</span>' in page
    note = text_of(page, "scheduled-note")
    assert re.match(rf"Scheduled: {FROZEN} \(in \d+ d( \d+ h)?\)\. It holds the slot and starts", note), note
    assert "Nothing has run yet: the release starts when it may" in page
    url = live_url(page)
    assert url is not None and "s=SCHEDULED" in url  # it can move by itself, so the page polls
    assert client.get(url, headers=HX).status_code == 204


def test_a_release_outside_its_change_window_says_when_the_window_opens(api, web, new_environment):
    release_id = scheduled(api, new_environment, freezes=[], change_windows=closed_today())
    note = text_of(web("member").get(f"/releases/{release_id}").text, "scheduled-note")
    tomorrow = DAYS[(utcnow().weekday() + 1) % 7].capitalize()
    assert re.match(rf"Scheduled: waiting for the change window: opens {tomorrow} 09:00 UTC \(in \d+ h( \d+ min)?\)\.",
                    note), note


def test_lifting_the_freeze_starts_the_release_and_the_polling_page_follows_it(api, web, new_environment):
    release_id = scheduled(api, new_environment)
    client = web("member")
    url = live_url(client.get(f"/releases/{release_id}").text)
    configure(api, freezes=[])
    assert state(api, release_id) == "IN_PROGRESS"
    fragment = client.get(url, headers=HX)
    assert fragment.status_code == 200
    assert 'id="release-panel" class="stack" hx-swap-oob="true"' in fragment.text  # the panel comes along
    assert "state-IN_PROGRESS" in fragment.text and 'id="scheduled-note"' not in fragment.text


def test_abort_is_offered_on_a_scheduled_release_and_its_confirmation_says_it_has_not_started(
        api, web, new_environment):
    release_id = scheduled(api, new_environment)
    url = f"/releases/{release_id}"
    panel = panel_of(web("dev").get(url).text)
    assert ">Abort</button>" in panel
    confirm = html.unescape(re.search(r'id="abort-button"[^>]*hx-confirm="([^"]+)"', panel, re.S).group(1))
    assert confirm == (f"Abort scheduled release #{release_id}? It has not started: nothing of it runs, it ends "
                       "failed and gives up the slot.")
    assert ">Abort</button>" not in panel_of(web("member").get(url).text)
    assert post(web("member"), f"{url}/abort").status_code == 403
    response = post(web("dev"), f"{url}/abort")
    assert response.status_code == 200 and "state-FAILED" in response.text
    assert (f'Scheduled <a href="/releases/{release_id}">release #{release_id}</a> was aborted before it started.'
            in response.text)
    aborted = release(api, release_id)
    assert aborted["state"] == "FAILED" and aborted["error"] == "aborted by dev"


# -- an emergency release: banner, review ---------------------------------------------------------------

def test_an_emergency_release_is_marked_in_red_and_its_review_waits_for_the_end(
        api, web, new_environment, people):
    release_id = emergency(api, new_environment, people)
    page = web("approver").get(f"/releases/{release_id}").text
    banner = text_of(page, "emergency-banner")
    assert banner.startswith(f"Emergency release: {REASON} \u2014 skipped the hook, the approval rules and the "
                             "change windows")
    assert re.search(r"Needs review in 23 h ?, once it has finished\.", banner)
    assert "Emergency release (break-glass)" in page and "An emergency release skips the hook." in page
    assert 'id="review-comment"' not in page  # still running: nothing to review yet
    assert live_url(page) is not None


def test_only_someone_else_who_may_approve_sees_the_review_form_and_the_triggerer_sees_why(
        api, web, new_environment, people, run_jobs):
    release_id = emergency(api, new_environment, people, run_jobs, medic_approves=True)
    url = f"/releases/{release_id}"
    approver = panel_of(web("approver").get(url).text)
    assert 'id="review-comment"' in approver and "required" in approver and ">Mark reviewed</button>" in approver
    for who in ("member", "dev"):  # without approve_release
        panel = panel_of(web(who).get(url).text)
        assert ">Mark reviewed</button>" not in panel and 'id="why-not-review"' not in panel
    medic = web("medic").get(url).text
    assert ">Mark reviewed</button>" not in panel_of(medic)
    assert text_of(medic, "why-not-review") == (
        "You triggered this emergency release, so someone else with the \u201cRelease Approval/Reject\u201d "
        "permission must review it.")
    # a finished, unreviewed emergency release still polls: the review may come from elsewhere
    assert live_url(medic) is not None


def test_reviewing_from_the_page_marks_it_reviewed_and_the_triggerer_is_refused_with_a_sentence(
        api, web, new_environment, people, run_jobs):
    release_id = emergency(api, new_environment, people, run_jobs, medic_approves=True)
    url = f"/releases/{release_id}"
    refused = post(web("medic"), f"{url}/review", {"comment": "my own fix was fine"})
    assert refused.status_code == 403 and refused.headers["HX-Retarget"] == "#messages"
    assert "You triggered this emergency release, so someone else" in html.unescape(refused.text)
    empty = post(web("approver"), f"{url}/review", {"comment": "  "})
    assert empty.status_code == 422 and "A review needs a comment" in empty.text
    assert release(api, release_id)["break_glass"]["review"] is None

    response = post(web("approver"), f"{url}/review", {"comment": "the right call; the hotfix is merged"})
    assert response.status_code == 200 and 'id="release-panel"' in response.text and "<html" not in response.text
    assert (f'<a href="/releases/{release_id}">Emergency release #{release_id}</a> is marked reviewed.'
            in response.text)
    assert "Reviewed by approver" in response.text and "the right call; the hotfix is merged" in response.text
    assert ">Mark reviewed</button>" not in response.text
    review = release(api, release_id)["break_glass"]["review"]
    assert review["by"] == "approver" and review["comment"] == "the right call; the hotfix is merged"
    page = web("member").get(url).text
    assert 'class="message emergency-banner reviewed"' in page and 'id="review-done"' in page
    assert live_url(page) is None  # reviewed and finished: nothing can change any more

    again = post(web("admin"), f"{url}/review", {"comment": "me too"}, htmx=False)
    assert again.status_code == 409 and "was reviewed already, by approver" in again.text


def test_an_overdue_review_says_so_on_the_release_page(app, api, web, new_environment, people, run_jobs):
    release_id = emergency(api, new_environment, people, run_jobs)
    set_review_due(app, release_id, utcnow() - timedelta(hours=3, minutes=5))
    banner = text_of(web("member").get(f"/releases/{release_id}").text, "review-due")
    assert re.fullmatch(r"Review overdue: it was due 3 h ago ?\.", banner), banner


# -- the dashboard and the environment page -------------------------------------------------------------

def test_the_dashboard_lists_emergencies_overdue_reviews_and_frozen_environments(
        app, api, web, new_environment, people, run_jobs):
    finished = emergency(api, new_environment, people, run_jobs)
    new_environment(PLAIN, name="calm")
    running = trigger(api, "medic", break_glass={"reason": "the login page is blank since the last deploy"})
    set_review_due(app, finished, utcnow() - timedelta(hours=2, minutes=1))
    configure(api, freezes=[FREEZE])
    client = web("member")
    page = client.get("/").text
    fragment = client.get("/fragments/dashboard?v=stale", headers=HTMX).text
    for shown in (page, fragment):  # the live part holds all of it
        banner = text_of(shown, "emergency-banner")
        assert banner.startswith("Emergency releases: the hook, the approval rules and the change windows were "
                                 "skipped")
        assert re.search(f"Release {finished} on svc/env Succeeded {REASON} by medic \u00b7 "
                         "review overdue ?, due 2 h ago", banner)
        assert f"Release {running} on svc/env In progress the login page is blank" in banner
        assert "still running; needs review in 23 h once finished" in banner
        links = re.findall(r'href="/releases/(\d+)"', shown[shown.index('id="emergency-banner"'):
                                                          shown.index('id="overdue-reviews"')])
        assert links == [str(finished), str(running)]
        overdue = text_of(shown, "overdue-reviews")
        assert re.search(rf"Release {finished} on svc/env by medic \u00b7 due 2 h ago", overdue)
        assert f"Release {running}" not in overdue
        assert f'<span class="window-badge frozen">{FROZEN[:1].upper()}{FROZEN[1:]}</span>' in shown
        assert shown.count('class="window-badge') == 1  # svc/calm is open
        assert '<span class="kind-emergency"' in shown  # the running one, in the active list
    # reviewed, it leaves the banner and the overdue list
    api("approver").post(f"/api/v1/releases/{finished}/review", json={"comment": "fine"})
    after = client.get("/").text
    assert f'href="/releases/{finished}"' not in text_of_html(after, "emergency-banner")
    assert 'id="overdue-reviews"' not in after
    # it stays the environment's last finished release, on its card
    assert re.search(rf'class="last-finished succeeded">.*?<a href="/releases/{finished}">', after, re.S)


def text_of_html(page: str, element_id: str) -> str:
    """The markup of the element with `element_id` (up to its closing tag), or "" when absent."""
    found = re.search(rf'<(\w+)[^>]* id="{element_id}".*?</\1>', page, re.S)
    return found.group(0) if found else ""


def test_a_board_with_windows_is_drawn_again_when_the_minute_moves(app, api, web, new_environment):
    new_environment(PLAIN)
    client = web("member")
    page = client.get("/").text
    assert "&amp;m=" not in page  # nothing on it changes with the clock alone
    configure(api, change_windows=closed_today())
    page = client.get("/").text
    version, minute = re.search(r'hx-get="/fragments/dashboard\?v=([^"&]+)&amp;m=(\d{12})"', page).groups()
    assert client.get(f"/fragments/dashboard?v={version}&m={minute}", headers=HTMX).status_code == 204
    redrawn = client.get(f"/fragments/dashboard?v={version}&m=202001010000", headers=HTMX)
    assert redrawn.status_code == 200 and "Outside change window, opens" in redrawn.text


def test_the_environment_page_shows_its_emergency_and_why_releases_wait(
        app, api, web, new_environment, people):
    release_id = emergency(api, new_environment, people)
    configure(api, change_windows=closed_today())
    client = web("member")
    page = client.get(PAGE).text
    path = "/fragments/projects/svc/environments/env"
    assert re.search(rf'hx-get="{re.escape(path)}\?v=[^"&]+&amp;m=\d{{12}}"', page)  # redrawn as the clock moves
    fragment = client.get(f"{path}?v=stale", headers=HTMX).text
    for shown in (page, fragment):
        banner = text_of(shown, "emergency-banner")
        assert f"Release {release_id} In progress {REASON}" in banner and " on svc/env" not in banner
        assert "Outside change window, opens" in text_of(shown, "environment-live")


def test_a_scheduled_release_shows_why_it_waits_on_the_dashboard(api, web, new_environment):
    release_id = scheduled(api, new_environment)
    page = web("member").get("/").text
    line = re.search(r'<li class="waiting">(.*?)</li>', page, re.S).group(1)
    assert f'href="/releases/{release_id}"' in line and "state-SCHEDULED" in line
    assert "Scheduled</strong>" in line and html.escape(FROZEN, quote=False) in line


# -- the trigger form ------------------------------------------------------------------------------------

def trigger_form(client, reason: str | None, **extra) -> dict:
    """The trigger form as sent; with a reason, by the "Emergency release" button (break_glass=on)."""
    form = {"csrf_token": client.csrf, "environment": "svc/env", "resources": json.dumps(CHANGE), **extra}
    if reason is not None:
        form.update(break_glass="on", break_glass_reason=reason)
    return form


def field_error(page: str) -> str:
    found = re.search(r'<span class="field-error" id="break_glass_reason-error">([^<]+)</span>', page)
    return html.unescape(found.group(1)) if found else ""


def test_the_emergency_part_of_the_trigger_form_is_only_for_people_who_hold_break_glass(
        web, new_environment, people):
    new_environment(PLAIN, allow_break_glass=True)
    new_environment(PLAIN, name="quiet")
    add_medic(people)
    page = web("medic").get("/trigger").text
    assert 'id="emergency"' in page and 'id="emergency-release" name="break_glass" value="on"' in page
    assert 'name="break_glass_reason" rows="3" minlength="10"' in page
    assert "skips the pre-release hook, the approval rules and the change windows" in page
    assert text_of(page, "emergency-where") == "Possible on svc/env."
    assert 'id="emergency"' not in web("dev").get("/trigger").text


def test_an_emergency_release_from_the_trigger_form_skips_the_hook_and_is_marked(
        app, api, web, new_environment, people):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}, allow_break_glass=True)
    add_medic(people)
    client = web("medic")
    response = client.post("/trigger", data=trigger_form(client, REASON))
    assert response.status_code == 303
    release_id = int(response.location.rsplit("/", 1)[1])
    made = release(api, release_id)
    assert made["break_glass"]["reason"] == REASON and made["state"] == "IN_PROGRESS"
    page = client.get(response.location).text
    assert (f'<a href="/releases/{release_id}">Emergency release #{release_id}</a> was triggered on svc/env: '
            "it skips the hook") in page
    assert 'id="emergency-banner"' in page


def test_an_emergency_release_is_refused_beside_the_reason_with_nothing_created(
        app, api, web, new_environment, people):
    new_environment(PLAIN, allow_break_glass=True)
    new_environment(PLAIN, name="other", allow_break_glass=True)
    add_medic(people)
    client = web("medic")
    short = client.post("/trigger", data=trigger_form(client, "too short", description="kept"))
    assert short.status_code == 422
    assert "An emergency release needs a reason of 10 to 2,000 characters" in field_error(short.text)
    assert "Emergency release</button>" in short.text and ">too short</textarea>" in short.text
    assert ">kept</textarea>" in short.text
    configure(api, allow_break_glass=False)
    off = client.post("/trigger", data=trigger_form(client, REASON))
    assert off.status_code == 409 and "does not allow emergency releases" in field_error(off.text)
    people.add("scoped", "trigger_release")
    grant(app, "scoped", "break_glass", "other")  # on svc/other only
    configure(api, allow_break_glass=True)
    scoped = web("scoped")
    denied = scoped.post("/trigger", data=trigger_form(scoped, REASON))
    assert denied.status_code == 403
    assert "\u201cEmergency release (break-glass)\u201d permission on svc/env" in field_error(denied.text)
    assert release_count(app) == 0
    # with the Trigger release button (no break_glass sent), a typed reason is not an emergency: a normal release
    plain = client.post("/trigger", data={**trigger_form(client, None), "break_glass_reason": REASON})
    assert plain.status_code == 303
    assert release(api, int(plain.location.rsplit("/", 1)[1]))["break_glass"] is None
