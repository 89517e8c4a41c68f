"""Real-browser tests: Debian's chromium, headless, against the app and a real worker."""
from __future__ import annotations

import re

from playwright.sync_api import expect


def test_sign_in_lands_on_the_dashboard_and_sign_out_ends_the_session(page_as):
    page = page_as("dev")
    expect(page.get_by_role("link", name="Dashboard")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/"))
