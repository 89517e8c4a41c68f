"""The pages in a real browser: Debian's chromium driven by Playwright, against the app served
on 127.0.0.1 with a real worker."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def browser():
    """One headless Debian chromium for the session."""
    from playwright.sync_api import sync_playwright

    from tests.browser_support import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def live_site(app, start_worker):
    """The app served on 127.0.0.1 with a real worker; yields the base URL."""
    from tests.browser_support import serve

    start_worker()
    with serve(app) as base_url:
        yield base_url


@pytest.fixture()
def page_as(browser, live_site, people):
    """page_as("approver") -> a Playwright page signed in through the sign-in form (1280×900, or
    `viewport`, e.g. a phone's)."""
    contexts = []
    refused: list[str] = []  # CSP violations and script errors seen by any page

    def open_as(name: str, viewport: dict | None = None):
        context = browser.new_context(base_url=live_site, viewport=viewport or {"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda message: message.type == "error" and "Content Security Policy" in message.text
                and refused.append(message.text))
        page.on("pageerror", lambda error: refused.append(str(error)))
        page.goto("/sign-in")
        page.get_by_label("Username").fill(name)
        page.get_by_label("Password").fill(f"{name}-password-123")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_site}/")
        return page

    yield open_as
    for context in contexts:
        context.close()
    assert refused == [], "the pages broke the Content-Security-Policy or threw errors"
