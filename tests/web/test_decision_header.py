"""The decision header of a pending release: why it waits, for how long, who may decide and what
it changes come first, then Approve/Reject; who cannot decide is told why, and who can."""
from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from tests.helpers import trigger
from tests.web.release_page_support import MIXED, PROCEEDS, WAITS, panel_of, pending, post
from tests.web.test_approval_rules_pages import text_of
from webapp.extensions import db
from webapp.models import Release, utcnow

ENV = "/api/v1/projects/svc/environments/env"
TWO_LINES = {"svc/pre_release_hooks/pre_release_hook.sh": "echo checked the schema\necho 'drops table orders'\necho\n"
             "exit 2\n"}


def shown(page: str, element_id: str) -> str:
    found = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"#{element_id} is not on the page"
    return text_of(found.group(2))


def wait_longer(app, release_id: int, waited: timedelta) -> None:
    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == release_id)
                           .values(pending_since=utcnow() - waited))
        db.session.commit()


def test_a_reviewer_reads_why_how_long_who_and_what_before_the_buttons(app, api, web, new_environment, run_jobs):
    new_environment(TWO_LINES)
    api("admin").patch(ENV, json={"approval_timeout_hours": 52.5})
    release_id = pending(api, run_jobs, resources=MIXED, description="nightly")
    wait_longer(app, release_id, timedelta(minutes=12, seconds=30))
    page = web("approver").get(f"/releases/{release_id}").text
    panel = panel_of(page)
    assert panel.index('id="decision-header"') < panel.index('id="approve-button"') < panel.index('id="details-title"')
    header = panel[panel.index(">") + 1:panel.index("<section class=\"card\" aria-labelledby=\"details-title\"")]
    assert text_of(header) == (
        f'Release #{release_id} Pending approval nightly Why it waits: drops table orders '
        "waiting 12 min · expires in 2 d 4 h admin, approver can decide. "
        "Approval 0 of 1 rule met \u2014 default: waiting (needs 1 of 2 who may approve) "
        "Changes: 1 DELETE (destructive) , 1 REPLACE (destructive) , 1 UPDATE_IN_PLACE , 2 CREATE "
        "First release of this environment: resources: 5 added Comment optional; kept with your decision "
        "Approve Reject")
    assert re.findall(r"<button[^>]*>(.*?)</button>", header) == ["Approve", "Reject"]
    assert page.count('id="approval-summary"') == 1 and page.count('id="release-title"') == 1


def test_the_verdicts_reason_wins_over_the_last_output_line_and_no_timeout_says_no_expiry(
        app, api, web, new_environment, run_jobs):
    new_environment(TWO_LINES)
    release_id = pending(api, run_jobs)
    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == release_id)
                           .values(approval_reason="touches the payments schema"))
        db.session.commit()
    page = web("member").get(f"/releases/{release_id}").text
    assert shown(page, "decision-reason") == "Why it waits: touches the payments schema"
    assert shown(page, "decision-timing") == "waiting under a minute"


def test_someone_without_the_permission_is_told_what_deciding_needs_and_who_can(api, web, new_environment,
                                                                                 run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    page = web("member").get(f"/releases/{release_id}").text
    assert shown(page, "why-cannot-decide") == (
        "Deciding needs Release Approval/Reject on svc/env \u2014 admin, approver can decide.")
    assert ">Approve</button>" not in page and ">Reject</button>" not in page


def test_the_triggerer_is_told_they_triggered_it_and_who_decides_instead(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, who="approver")
    page = web("approver").get(f"/releases/{release_id}").text
    assert shown(page, "why-cannot-decide") == (
        "You triggered this release, so someone else decides \u2014 admin can decide. "
        "Withdraw it if it should not go ahead.")
    assert ">Approve</button>" not in page and ">Withdraw</button>" in page


def test_trigger_again_is_offered_only_once_the_release_has_finished(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    approver = web("approver")  # holds trigger_release
    assert ">Trigger again</button>" not in panel_of(approver.get(f"/releases/{release_id}").text)
    api("admin").post(f"/api/v1/releases/{release_id}/reject", json={})
    assert ">Trigger again</button>" in panel_of(approver.get(f"/releases/{release_id}").text)


def test_times_read_relative_with_the_absolute_time_on_hover(app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    with app.app_context():
        created = db.session.get(Release, release_id).created_at
    page = web("member").get(f"/releases/{release_id}").text
    stamp = f'<time datetime="{created:%Y-%m-%dT%H:%M:%SZ}" title="{created:%Y-%m-%d %H:%M} UTC" data-relative>'
    assert f"<dt>Triggered</dt><dd>{stamp}under a minute ago</time></dd>" in page
    trail = page[page.index('id="audit-title"'):]
    assert f'<td data-label="When">{stamp}under a minute ago</time></td>' in trail


def test_a_running_release_shows_how_long_it_has_run_and_a_finished_one_how_long_it_took(
        app, api, web, new_environment, run_jobs):
    new_environment(PROCEEDS)
    release_id = trigger(api, "dev")  # READY: its hook job not run yet
    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == release_id)
                           .values(started_at=utcnow() - timedelta(minutes=3, seconds=30)))
        db.session.commit()
    client = web("member")
    assert "running for 3 min…" in text_of(client.get(f"/releases/{release_id}").text)
    run_jobs()
    assert re.search(r"Finished .* ago · took 3 min", text_of(client.get(f"/releases/{release_id}").text))


def test_spans_and_relative_times_read_as_people_say_them():
    from datetime import datetime

    from webapp.views.web import relative, span

    now = datetime(2026, 12, 3, 6, 0)
    assert [span(s) for s in (30, 12 * 60 + 30, 3 * 3600 + 20 * 60, 52 * 3600 + 17 * 60)] == [
        "under a minute", "12 min", "3 h", "2 d"]
    assert span(3 * 3600 + 20 * 60, precise=True) == "3 h 20 min" and span(48 * 3600, precise=True) == "2 d"
    assert relative(now + timedelta(hours=52, minutes=17), now, precise=True) == "in 2 d 4 h"
    assert relative(now + timedelta(hours=14, minutes=5), now) == "in 14 h"
    assert relative(now - timedelta(seconds=20), now) == "under a minute ago"


def test_the_decision_header_is_gone_once_decided(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    response = post(web("approver"), f"/releases/{release_id}/approve")
    assert response.status_code == 200 and 'id="decision-header"' not in response.text
    assert 'id="release-title"' in response.text and "state-APPROVED" in response.text


# -- in a real browser ----------------------------------------------------------------------------------------

PHONE = {"width": 390, "height": 844}


def test_in_a_browser_the_reviewer_reads_the_header_first_and_on_a_phone_decides_from_a_bar_at_the_bottom(
        api, page_as, new_environment):
    from playwright.sync_api import expect

    from tests.helpers import state, wait_for

    new_environment(TWO_LINES)
    release_id = trigger(api, "dev", resources=MIXED, description="nightly")
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")

    desk = page_as("approver")
    desk.goto(f"/releases/{release_id}")
    header = desk.locator("#decision-header")
    expect(header).to_contain_text("Why it waits: drops table orders")
    expect(header).to_contain_text("admin, approver can decide")
    expect(header).to_contain_text("1 DELETE (destructive)")
    assert desk.locator("#release-panel > *").first.get_attribute("id") == "decision-header"
    assert header.bounding_box()["y"] < desk.get_by_role("button", name="Approve").bounding_box()["y"] < 900
    assert desk.locator("#decide-bar").evaluate("bar => getComputedStyle(bar).position") == "static"
    desk.screenshot(path="/tmp/decision-header-desktop.png", full_page=True)

    phone = page_as("approver", viewport=PHONE)
    phone.goto(f"/releases/{release_id}")
    expect(phone.locator("#decision-header")).to_contain_text("waiting")
    phone.screenshot(path="/tmp/decision-header-phone.png")
    phone.mouse.wheel(0, 3000)  # the bar stays at the bottom of the screen however far one reads
    phone.wait_for_timeout(300)
    bar = phone.locator("#decide-bar").bounding_box()
    assert bar["x"] == 0 and bar["width"] == PHONE["width"]
    assert abs(bar["y"] + bar["height"] - PHONE["height"]) <= 1
    for name in ("Approve", "Reject"):
        button = phone.get_by_role("button", name=name)
        expect(button).to_be_in_viewport()
        box = button.bounding_box()
        assert box["height"] >= 44 and box["y"] >= bar["y"], name
    phone.screenshot(path="/tmp/decision-header-phone-scrolled.png")
    phone.get_by_role("button", name="Approve").click()
    expect(phone.locator("#release-panel .state").first).to_have_text("Approved")
    expect(phone.locator("#decide-bar")).to_have_count(0)


def test_in_a_browser_a_viewer_is_told_why_there_are_no_buttons(api, page_as, new_environment):
    from playwright.sync_api import expect

    from tests.helpers import state, wait_for

    new_environment(WAITS)
    release_id = trigger(api, "dev")
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    for viewport, name in ((None, "desktop"), (PHONE, "phone")):
        page = page_as("member", viewport=viewport)
        page.goto(f"/releases/{release_id}")
        why = page.locator("#why-cannot-decide")
        expect(why).to_be_in_viewport()
        expect(why).to_have_text("Deciding needs Release Approval/Reject on svc/env \u2014 admin, approver can decide.")
        for button in ("Approve", "Reject", "Trigger again"):
            expect(page.get_by_role("button", name=button)).to_have_count(0)
        page.screenshot(path=f"/tmp/decision-viewer-{name}.png")
