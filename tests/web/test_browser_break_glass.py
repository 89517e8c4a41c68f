"""Emergency releases and change windows in a real browser (Debian's chromium, a real worker): the
red banners on the dashboard and the release page, the review made in place, and a scheduled
release that says why it waits and is followed live once it may start. Each test saves a
screenshot beside its temporary files, to look at."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.helpers import state, trigger, wait_for
from tests.web.test_windows_and_break_glass_pages import FREEZE, REASON, add_medic, closed_today, configure

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}
RED = "rgb(253, 236, 234)"  # the emergency banner's background


def background(locator) -> str:
    return locator.evaluate("element => getComputedStyle(element).backgroundColor")


def test_an_emergency_release_is_red_on_the_dashboard_and_its_page_until_someone_reviews_it(
        api, page_as, new_environment, people, tmp_path):
    new_environment(WAITS, allow_break_glass=True)
    add_medic(people)
    release_id = trigger(api, "medic", break_glass={"reason": REASON})
    wait_for(lambda: state(api, release_id) == "SUCCEEDED")
    page = page_as("approver")
    banner = page.locator("#emergency-banner")
    expect(banner).to_contain_text(REASON)
    expect(banner.get_by_role("link", name=f"Release {release_id}")).to_be_visible()
    expect(banner).to_contain_text("needs review in")
    expect(page.locator(".environment-tile .kind-emergency")).to_have_count(0)  # finished: not in the lists
    assert background(banner) == RED
    page.screenshot(path=tmp_path / "dashboard-emergency.png", full_page=True)

    banner.get_by_role("link", name=f"Release {release_id}").click()
    panel_banner = page.locator("#release-panel #emergency-banner")
    expect(panel_banner).to_contain_text(f"Emergency release: {REASON} — skipped the hook, the approval rules and "
                                         "the change windows")
    expect(page.locator("#review-due")).to_contain_text("Needs review in")
    assert background(panel_banner) == RED
    page.screenshot(path=tmp_path / "release-emergency.png", full_page=True)

    page.get_by_label("Review of this emergency release").fill("right call: the payment fix is merged")
    page.get_by_role("button", name="Mark reviewed").click()
    expect(page.locator("#messages")).to_contain_text(f"Emergency release #{release_id} is marked reviewed.")
    expect(page.locator("#review-done")).to_contain_text("Reviewed by approver")
    expect(page.locator("#release-panel")).to_contain_text("right call: the payment fix is merged")
    expect(page.get_by_role("button", name="Mark reviewed")).to_have_count(0)
    # the banner follows once the page has drawn the review: waited for, not read at once
    expect(page.locator("#emergency-banner")).not_to_have_css("background-color", RED)
    page.goto("/")
    expect(page.locator("#emergency-banner")).to_have_count(0)


def test_a_scheduled_release_says_why_it_waits_and_the_page_follows_it_once_the_freeze_lifts(
        api, page_as, new_environment, tmp_path):
    new_environment({"README.md": "no hook\n"}, approval_workflow=False)
    configure(api, freezes=[FREEZE])
    release_id = trigger(api, "approver")
    assert state(api, release_id) == "SCHEDULED"
    page = page_as("dev")
    expect(page.locator(".environment-tile .window-badge")).to_contain_text("Frozen until 2099-01-01T00:00:00Z")
    page.goto("/projects/svc/environments/env")
    badge = page.locator("#environment-live .window-badge")
    expect(badge).to_have_text("Frozen until 2099-01-01T00:00:00Z — year-end freeze")
    expect(badge).to_be_visible()
    page.screenshot(path=tmp_path / "environment-frozen.png", full_page=True)
    page.goto(f"/releases/{release_id}")
    expect(page.locator("#release-panel .state")).to_have_text("Scheduled")
    note = page.locator("#scheduled-note")
    expect(note).to_contain_text(
        re.compile(r"frozen until 2099-01-01T00:00:00Z — year-end freeze \(in \d+ d( \d+ h)?\)"))
    expect(page.get_by_role("button", name="Abort")).to_be_visible()
    page.screenshot(path=tmp_path / "release-scheduled.png", full_page=True)

    page.evaluate("window.notReloaded = true")
    configure(api, freezes=[])
    expect(page.locator("#release-panel .state")).to_have_text("Succeeded")  # polled to the end, no reload
    expect(note).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True

    # Outside its change window instead: the page says when the window opens and in how long.
    configure(api, change_windows=closed_today())
    waiting = trigger(api, "approver")
    assert state(api, waiting) == "SCHEDULED"
    page.goto(f"/releases/{waiting}")
    expect(page.locator("#scheduled-note")).to_contain_text(re.compile(
        r"Scheduled: waiting for the change window: opens \w{3} 09:00 UTC \(in \d+ h( \d+ min)?\)\."))
    page.screenshot(path=tmp_path / "release-outside-window.png", full_page=True)
    page.goto("/projects/svc/environments/env")
    expect(page.locator("#environment-live .window-badge")).to_have_text(
        re.compile(r"Outside change window, opens \w{3} 09:00 UTC"))
    page.goto("/")
    expect(page.locator("li.waiting .approval-summary")).to_have_text(
        re.compile(r"waiting for the change window: opens \w{3} 09:00 UTC \(in \d+ h( \d+ min)?\)"))
