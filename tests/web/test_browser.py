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


PHONE = {"width": 390, "height": 844}


def cells_beyond_the_screen(page, selector: str) -> list[str]:
    """The labels of the cells of `selector` whose right edge lies past the phone's screen, or
    whose text runs out of the cell (a long word that does not wrap)."""
    return page.eval_on_selector_all(f"{selector} td", """(cells) => cells
        .filter((cell) => cell.getBoundingClientRect().right > window.innerWidth + 0.5
                          || cell.scrollWidth > cell.clientWidth + 1)
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
    # A reason of one long word (a link, a path) wraps inside its cell rather than past the screen.
    link = "https://ci.example.com/" + "pipelines/" * 12 + "4711"
    assert api("approver").post(f"/api/v1/releases/{release_id}/reject", json={"comment": link}).status_code == 200
    page.goto(f"/releases/{release_id}")
    expect(page.locator("table.audit td[data-label='Why']", has_text=link)).to_be_visible()
    assert cells_beyond_the_screen(page, "table.audit") == []


def test_a_reviewer_sees_what_changed_since_the_last_release_and_a_rollback_in_words(api, page_as, new_environment):
    from tests.helpers import commit_files, git, state, trigger, wait_for

    repo = new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    first_commit = git(repo, "rev-parse", "HEAD")
    first = trigger(api, ref=first_commit)
    wait_for(lambda: state(api, first) == "PENDING_APPROVAL")
    bot = api("approver").post(f"/api/v1/releases/{first}/approve", json={}).json["bot_release_id"]
    wait_for(lambda: state(api, bot) == "SUCCEEDED")
    commit_files(repo, {"migrations/0002.sql": "ALTER TABLE t ADD c int;\n"}, "Add a note column")
    second = trigger(api, ref=git(repo, "rev-parse", "HEAD"))
    wait_for(lambda: state(api, second) == "PENDING_APPROVAL")
    page = page_as("approver")
    page.goto(f"/releases/{second}")
    summary = page.locator("#since-summary")
    expect(summary).to_contain_text(f"Since release #{bot}")
    expect(summary).to_contain_text("1 commit by Test · 1 file (+1 −0)")
    expect(page.locator("#since")).to_contain_text("Add a note column")
    expect(page.locator("#since .highlight-migration")).to_contain_text("0002.sql")
    # Once it is applied, going back to the first commit is a rollback: said in the warning colour.
    applied = api("approver").post(f"/api/v1/releases/{second}/approve", json={}).json["bot_release_id"]
    wait_for(lambda: state(api, applied) == "SUCCEEDED")
    back = trigger(api, ref=first_commit)
    wait_for(lambda: state(api, back) == "PENDING_APPROVAL")
    page.goto(f"/releases/{back}")
    expect(page.locator(".since-warning").first).to_contain_text("Rollback")
    expect(page.locator("#since-summary")).to_contain_text("rollback: undoes")
    color = page.locator("#since-summary a").evaluate("element => getComputedStyle(element).color")
    assert color == "rgb(138, 90, 0)"  # --warn
