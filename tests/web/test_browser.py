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


def test_a_read_only_member_sees_no_buttons_and_a_forged_post_is_refused(api, page_as, new_environment):
    from tests.helpers import state, trigger, wait_for

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    page = page_as("member")
    page.goto(f"/releases/{release_id}")
    expect(page.locator("#release-panel .state")).to_have_text("Pending approval")
    for name in ("Approve", "Reject", "Cancel", "Abort", "Trigger again"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    # The same POST the Approve button would send, with this session's valid CSRF token.
    status = page.evaluate("""async (url) => {
        const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
        const response = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token}});
        return response.status;
    }""", f"/releases/{release_id}/approve")
    assert status == 403
    assert state(api, release_id) == "PENDING_APPROVAL"


def test_turning_on_both_switches_shows_the_reason_beside_the_field(api, page_as, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    page = page_as("admin")
    page.goto("/projects/svc/environments/env")
    page.get_by_label("Parallel releases").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#parallel_releases-error")).to_contain_text("exclude each other")
    settings = api("member").get("/api/v1/projects/svc/environments/env").json
    assert settings["parallel_releases"] is False and settings["approval_workflow"] is True


PHONE = {"width": 390, "height": 844}


def cells_beyond_the_screen(page, selector: str) -> list[str]:
    """The labels of the cells of `selector` whose right edge lies past the phone's screen."""
    return page.eval_on_selector_all(f"{selector} td", """(cells) => cells
        .filter((cell) => cell.getBoundingClientRect().right > window.innerWidth + 0.5)
        .map((cell) => cell.dataset.label || cell.textContent.trim())""")


def test_on_a_phone_the_approvals_and_the_audit_trail_show_every_column(api, page_as, new_environment):
    from tests.helpers import state, trigger, wait_for

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api, description="a description long enough to need the room of a wide column")
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    page = page_as("approver", viewport=PHONE)
    page.goto("/approvals")
    expect(page.locator("#approvals-list td[data-label='Waiting since']")).to_be_visible()
    assert cells_beyond_the_screen(page, "#approvals-list") == []
    page.goto(f"/releases/{release_id}")
    expect(page.locator("table.audit td[data-label='Why']").first).to_be_visible()
    assert cells_beyond_the_screen(page, "table.audit") == []
