"""Real browser: the outbox mail's Approve link, followed in Chromium by a signed-in
reviewer, leads to the confirmation page and approves (no MAIL_SERVER: development); a mail
delivered by a real SMTP server leads to a page whose Approve and Reject sit in the decide bar,
on a phone fixed to the bottom of the screen."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.helpers import trigger, wait_for
from tests.notify_support import links

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": 'echo "a human must look"\nexit 2\n'}


@pytest.fixture()
def live_site(request, app, start_worker, monkeypatch):
    """The app on 127.0.0.1 with a real worker that writes links to this very address; it
    delivers to the test's `smtp_server` when the test asks for one, else to the outbox."""
    from tests.browser_support import serve

    with serve(app) as base_url:
        monkeypatch.setenv("BASE_URL", base_url)  # read by the worker at its start
        monkeypatch.delenv("MAIL_SERVER", raising=False)
        if "smtp_server" in request.fixturenames:
            monkeypatch.setenv("MAIL_SERVER", "127.0.0.1")
            monkeypatch.setenv("MAIL_PORT", str(request.getfixturevalue("smtp_server").port))
        start_worker()
        yield base_url


def outbox_mail_to(app, address: str):
    from webapp.extensions import db
    from webapp.models import OutgoingMail

    with app.app_context():
        return db.session.scalar(sa.select(OutgoingMail.id).where(OutgoingMail.to_address == address,
                                                                  OutgoingMail.status == "outbox"))


def test_the_outbox_approve_link_followed_by_a_signed_in_reviewer_confirms_and_approves(
        app, api, new_environment, page_as, live_site):
    new_environment(WAITS)
    release_id = trigger(api, "dev", description="Switch the payment provider")
    wait_for(lambda: outbox_mail_to(app, "approver@example.com"), timeout=30)

    # An admin opens the development outbox and the mail to the reviewer.
    admin = page_as("admin")
    admin.goto("/admin/outbox")
    admin.get_by_role("row", name=re.compile("approver@example.com")).get_by_role(
        "link", name=f"[Releasegate] svc/env (QA): release #{release_id} needs your approval").click()
    approve = admin.get_by_role("link", name="Approve", exact=True)
    href = approve.get_attribute("href")
    assert href.startswith(f"{live_site}/email/links/")

    # The reviewer follows it in their own signed-in browser.
    reviewer = page_as("approver")
    reviewer.goto(href)
    expect(reviewer.get_by_role("heading", name=f"Approve release #{release_id} of svc/env?")).to_be_visible()
    expect(reviewer.get_by_text("Switch the payment provider")).to_be_visible()
    expect(reviewer.get_by_text("a human must look")).to_be_visible()
    assert api("member").get(f"/api/v1/releases/{release_id}").json["state"] == "PENDING_APPROVAL"
    reviewer.get_by_label(re.compile("^Comment")).fill("checked the plan")
    reviewer.get_by_role("button", name=f"Approve release #{release_id}").click()
    expect(reviewer.get_by_role("heading", name=f"Release #{release_id} approved")).to_be_visible()

    release = api("member").get(f"/api/v1/releases/{release_id}").json
    assert release["state"] == "APPROVED"
    assert release["decisions"][0]["via"] == "email" and release["decisions"][0]["comment"] == "checked the plan"

    # The same link again: used, and it says so.
    reviewer.goto(href)
    expect(reviewer.get_by_role("heading", name="This link was already used")).to_be_visible()


PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def delivered_link(smtp_server, address: str, label: str) -> str:
    """The `label` link of the approval request the SMTP server received for `address`."""
    wait_for(lambda: smtp_server.inbox.to(address), timeout=30)
    [message] = smtp_server.inbox.to(address)
    return links(message)[label]


@pytest.fixture()
def signed_out(browser, live_site):
    """signed_out(viewport) -> a page of a fresh browser nobody signed in to."""
    contexts, errors = [], []

    def open_page(viewport: dict):
        context = browser.new_context(base_url=live_site, viewport=viewport)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == []


def follow_and_sign_in(page, link: str, who: str) -> None:
    """Open a mailed link signed out, sign in on the page it leads to, and come back to it."""
    page.goto(link)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(who)
    page.get_by_label("Password").fill(f"{who}-password-123")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(link)


def test_on_a_phone_the_delivered_links_page_has_approve_in_a_bar_at_the_bottom_and_approves(
        app, api, new_environment, signed_out, live_site, smtp_server):
    new_environment(WAITS)
    release_id = trigger(api, "dev", description="Switch the payment provider")
    link = delivered_link(smtp_server, "approver@example.com", "Reject")
    assert link.startswith(f"{live_site}/email/links/") and urlsplit(link).path.startswith("/email/links/")

    phone = signed_out(PHONE)
    follow_and_sign_in(phone, link, "approver")
    expect(phone.get_by_role("heading", name=f"Reject release #{release_id} of svc/env?")).to_be_visible()
    bar = phone.locator("#decide-bar")
    approve = bar.get_by_role("button", name=f"Approve release #{release_id}")
    reject = bar.get_by_role("button", name=f"Reject release #{release_id}")
    expect(approve).to_be_visible()
    expect(reject).to_be_visible()
    assert bar.evaluate("element => getComputedStyle(element).position") == "fixed"
    bar_box, button = bar.bounding_box(), approve.bounding_box()
    assert abs(bar_box["y"] + bar_box["height"] - PHONE["height"]) <= 1  # on the bottom edge, unscrolled
    assert bar_box["x"] <= 1 and bar_box["width"] >= PHONE["width"] - 2  # edge to edge
    assert button["height"] >= 44 and button["width"] >= 0.4 * PHONE["width"]  # half the bar, beside Reject
    assert button["y"] >= PHONE["height"] - 100 and button["y"] + button["height"] <= PHONE["height"]
    assert api("member").get(f"/api/v1/releases/{release_id}").json["state"] == "PENDING_APPROVAL"

    phone.get_by_label(re.compile("^Comment")).fill("fine from my phone")
    approve.click()
    expect(phone.get_by_role("heading", name=f"Release #{release_id} approved")).to_be_visible()
    release = api("member").get(f"/api/v1/releases/{release_id}").json
    assert release["state"] == "APPROVED"
    assert (release["decisions"][0]["by"], release["decisions"][0]["via"], release["decisions"][0]["comment"]) == (
        "approver", "email", "fine from my phone")


def test_on_a_desktop_the_delivered_approve_links_page_rejects(
        app, api, new_environment, signed_out, live_site, smtp_server):
    new_environment(WAITS)
    release_id = trigger(api, "dev", description="Switch the payment provider")
    link = delivered_link(smtp_server, "approver@example.com", "Approve")

    desktop = signed_out(DESKTOP)
    follow_and_sign_in(desktop, link, "approver")
    expect(desktop.get_by_role("heading", name=f"Approve release #{release_id} of svc/env?")).to_be_visible()
    bar = desktop.locator("#decide-bar")
    assert bar.evaluate("element => getComputedStyle(element).position") != "fixed"  # in the page's flow
    expect(bar.get_by_role("button", name=f"Approve release #{release_id}")).to_be_visible()
    desktop.get_by_label(re.compile("^Comment")).fill("not this week")
    bar.get_by_role("button", name=f"Reject release #{release_id}").click()
    expect(desktop.get_by_role("heading", name=f"Release #{release_id} rejected")).to_be_visible()
    release = api("member").get(f"/api/v1/releases/{release_id}").json
    assert release["state"] == "REJECTED"
    assert (release["decisions"][0]["by"], release["decisions"][0]["via"], release["decisions"][0]["comment"]) == (
        "approver", "email", "not this week")

    desktop.goto(link)  # the mail's links decided once: the Approve link is used up too
    expect(desktop.get_by_role("heading", name="This link was already used")).to_be_visible()
