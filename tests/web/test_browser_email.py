"""Real browser: the outbox mail's Approve link, followed in Chromium by a signed-in
reviewer, leads to the confirmation page and approves (no MAIL_SERVER: development)."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.helpers import trigger, wait_for

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": 'echo "a human must look"\nexit 2\n'}


@pytest.fixture()
def live_site(app, start_worker, monkeypatch):
    """The app on 127.0.0.1 with a real worker that writes links to this very address."""
    from tests.browser_support import serve

    with serve(app) as base_url:
        monkeypatch.setenv("BASE_URL", base_url)  # read by the worker at its start
        monkeypatch.delenv("MAIL_SERVER", raising=False)
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
