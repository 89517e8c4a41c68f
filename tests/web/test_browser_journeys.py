"""A release's whole journey in a real browser, at a desktop's size and a phone's: the developer
triggers it, the reviewer's dashboard shows it waiting without a reload, the reviewer reads the
decision header before the buttons, approves, and the same release page shows the bot release
applying it until it is done; the developer is told why they cannot decide their own release."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.helpers import release
from tests.web.release_page_support import MIXED
from tests.web.test_browser import PHONE

HOOK = {"svc/pre_release_hooks/pre_release_hook.sh": "echo 'a DELETE needs a second pair of eyes'\nexit 2\n"}
DESKTOP = {"width": 1280, "height": 900}


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_trigger_review_approve_and_watch_it_apply_on_the_same_page(api, page_as, new_environment, viewport):
    new_environment(HOOK, release_command="echo deployed svc to QA")
    reviewer = page_as("approver", viewport=viewport)
    card = reviewer.locator("#dashboard")
    expect(card).to_contain_text("Nothing running")

    developer = page_as("dev", viewport=viewport)
    developer.goto("/trigger")
    developer.get_by_label("Resource changes (JSON)").fill(json.dumps(MIXED))
    developer.get_by_label("Description").fill("drop the old orders table")
    developer.get_by_role("button", name="Trigger release").click()
    expect(developer.locator("#messages")).to_contain_text("was triggered on svc/env")

    # the reviewer's dashboard, open all along, shows it waiting with a Review button
    expect(card).to_contain_text("Waiting for approval", timeout=30_000)
    expect(card).to_contain_text("drop the old orders table")
    expect(card.locator(".destructive-badge")).to_be_visible()
    card.get_by_role("link", name="Review").click()

    header = reviewer.locator("#decision-header")
    expect(header).to_contain_text("a DELETE needs a second pair of eyes")
    expect(header).to_contain_text("waiting")
    approve = reviewer.get_by_role("button", name="Approve")
    expect(approve).to_be_in_viewport()
    if viewport is PHONE:  # a bar fixed to the bottom of the screen, full width, a thumb's height
        bar = reviewer.locator(".decide-bar").bounding_box()
        assert bar["width"] == PHONE["width"] and abs(bar["y"] + bar["height"] - PHONE["height"]) <= 1
        assert approve.bounding_box()["height"] >= 44
    else:  # what the reviewer decides on comes before the buttons
        assert header.bounding_box()["y"] < approve.bounding_box()["y"]
    approve.click()

    release_id = int(reviewer.url.rsplit("/", 1)[1])
    expect(reviewer.locator("#release-panel .state").first).to_have_text("Approved")
    bot_id = release(api, release_id)["bot_release_id"]
    applied = reviewer.locator("#applied-as")
    expect(applied).to_contain_text(f"bot release #{bot_id}")
    expect(applied.locator(".state")).to_have_text("Succeeded", timeout=30_000)
    expect(reviewer.locator("#applied-as-log")).to_contain_text("deployed svc to QA")
    expect(reviewer.locator("#applying-as")).to_contain_text(f"applied as bot release #{bot_id}")
    assert reviewer.url.endswith(f"/releases/{release_id}")  # one release, one page
    applied.get_by_role("link", name=f"bot release #{bot_id}").click()
    expect(reviewer.locator("#release-title")).to_have_text(f"Bot release #{bot_id}")

    developer.goto(f"/releases/{release_id}")
    expect(developer.locator("#release-panel")).to_contain_text(f"applied as bot release #{bot_id}")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_triggerer_is_told_in_place_of_the_buttons_why_they_cannot_decide(
        api, page_as, new_environment, viewport):
    from tests.helpers import state, trigger, wait_for

    new_environment(HOOK)
    release_id = trigger(api, "approver")  # the approver may approve, but not their own release
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    page = page_as("approver", viewport=viewport)
    page.goto(f"/releases/{release_id}")
    why = page.locator("#why-cannot-decide")
    expect(why).to_contain_text("You triggered this release, so someone else decides")
    expect(why).to_be_in_viewport()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
