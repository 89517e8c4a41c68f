"""The environment settings form in a real browser (Debian's chromium): the mode as one choice
of three, the confirmation a weakening change asks for, the error summary, and a reload of the
address a refused save leaves behind."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.web.test_browser import PHONE

HOOK = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"}
PAGE = "/projects/svc/environments/env"
API_ENV = "/api/v1/projects/svc/environments/env"


def mode_choice(page):
    return page.get_by_role("group", name=re.compile(r"^Mode"))


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_the_mode_is_one_choice_of_three_and_turning_approval_off_asks_first(api, page_as, new_environment, viewport):
    new_environment(HOOK)
    page = page_as("admin", viewport=viewport)
    page.goto(PAGE)
    modes = mode_choice(page).get_by_role("radio")
    expect(modes).to_have_count(3)
    expect(page.get_by_role("radio", name=re.compile(r"^Approval workflow"))).to_be_checked()
    expect(page.get_by_role("checkbox", name=re.compile(r"Parallel releases"))).to_have_count(0)

    page.get_by_role("radio", name=re.compile(r"^Parallel releases")).check()
    expect(page.get_by_role("radio", name=re.compile(r"^Approval workflow"))).not_to_be_checked()
    page.get_by_role("button", name="Save settings").click()

    warning = page.locator("#settings-weakening")
    expect(warning).to_be_in_viewport()  # the page opens on the question, on a phone too
    expect(warning).to_contain_text("These settings weaken the gate. Nothing is saved yet.")
    expect(warning).to_contain_text("The approval workflow is turned off")
    expect(page.get_by_role("radio", name=re.compile(r"^Parallel releases"))).to_be_checked()  # what was chosen
    assert api("member").get(API_ENV).json["mode"] == "approval"

    page.get_by_role("button", name="Save anyway").click()
    expect(page.locator("#messages")).to_contain_text("Settings saved: Approval workflow, Parallel releases.")
    expect(page.get_by_role("radio", name=re.compile(r"^Parallel releases"))).to_be_checked()
    saved = api("member").get(API_ENV).json
    assert (saved["mode"], saved["approval_workflow"], saved["parallel_releases"]) == ("parallel", False, True)


def test_changing_the_form_instead_of_confirming_asks_again_or_saves_a_harmless_change(
        api, page_as, new_environment):
    new_environment(HOOK)
    page = page_as("admin")
    page.goto(PAGE)
    page.get_by_role("textbox", name=re.compile(r"^Release command")).fill("bash deploy.sh")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#settings-weakening")).to_contain_text("The release command changes")
    # Thought better of it: empty the box again and save the form itself.
    page.get_by_role("textbox", name=re.compile(r"^Release command")).fill("")
    page.get_by_label("Hook timeout (seconds)").fill("120")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#messages")).to_contain_text("Settings saved: Hook timeout (seconds).")
    expect(page.locator("#settings-weakening")).to_have_count(0)
    saved = api("member").get(API_ENV).json
    assert (saved["release_command"], saved["hook_timeout_seconds"]) == (None, 120)


def test_a_refused_save_lists_its_errors_at_the_top_and_a_reload_of_its_address_shows_the_form(
        api, page_as, new_environment):
    new_environment(HOOK)
    page = page_as("admin")
    page.goto(PAGE)
    # What the browser lets through but the server refuses: a blank stream, a rule without a count.
    page.get_by_label("Release stream").fill(" ")
    page.get_by_role("textbox", name=re.compile(r"^Approval rules")).fill("dba dba")
    page.get_by_role("button", name="Save settings").click()
    summary = page.locator("#settings-error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("Nothing was saved.")
    expect(summary.get_by_role("link")).to_have_count(2)
    summary.get_by_role("link", name=re.compile(r"^Approval rules")).click()
    expect(page.get_by_role("textbox", name=re.compile(r"^Approval rules"))).to_be_focused()
    assert page.url.endswith("/settings#setting-approval_rules")

    page.goto(page.url.split("#")[0])  # the address bar's address, opened again
    expect(page.locator("#messages")).to_contain_text("Nothing was saved from that address")
    expect(page.get_by_label("Release stream")).to_have_value("QA")
    expect(page.locator("#settings-error-summary")).to_have_count(0)


def test_a_new_token_expires_in_90_days_by_default_and_its_copy_button_copies_it(page_as, live_site):
    page = page_as("member")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_site)
    page.goto("/admin/tokens")
    expect(page.get_by_label("Expires")).to_have_value("90")
    page.get_by_label("Name").fill("CI deploy job")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").inner_text()
    assert token.startswith("rg_")
    copy = page.locator("button[data-copy=new-token]")
    expect(copy).to_have_text("Copy")
    expect(copy).to_be_visible()
    copy.click()
    expect(copy).to_have_text("Copied")
    expect(page.locator("[data-copied-for='new-token']")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == token
    row = page.get_by_role("row", name=re.compile("CI deploy job"))
    expect(row).to_contain_text("Active")
