"""On a phone (390×844) every page fits the screen: the navigation folds into a menu under a
one-row header, tables become one card per row with each cell under its column's name, long
values wrap inside the screen, and every tap target is at least 44 px tall. On a desktop the
navigation is simply there."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.helpers import state, trigger, wait_for
from tests.web.test_browser import PHONE, cells_beyond_the_screen

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "echo 'a reviewer must look'\nexit 2\n"}
TAP = 44
# Everything a thumb presses: buttons, links styled as buttons, menus, form fields.
TAP_TARGETS = ("button:visible, a.button:visible, summary:visible, select:visible, "
               "input:visible:not([type=hidden]):not([type=checkbox]):not([type=radio]), .topbar nav a:visible")


def too_small(page) -> list[str]:
    """The visible tap targets less than 44 px tall, by their text."""
    return [f"{target.evaluate('e => e.outerHTML.slice(0, 80)')} ({target.bounding_box()['height']:.0f} px)"
            for target in page.locator(TAP_TARGETS).all()
            if target.bounding_box() and target.bounding_box()["height"] < TAP - 0.5]


def fits_the_screen(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_on_a_phone_the_navigation_is_a_menu_under_a_one_row_header(page_as):
    page = page_as("admin", viewport=PHONE)
    header = page.locator("header.topbar")
    menu = page.locator("header .menu > summary")
    expect(menu).to_be_visible()
    nav = page.locator("header nav")
    expect(nav.get_by_role("link", name="Admin")).to_be_hidden()
    assert header.bounding_box()["height"] <= 64  # one row: the brand and the menu button
    brand, button = page.locator("header .brand").bounding_box(), menu.bounding_box()
    assert abs(brand["y"] - button["y"]) < TAP and button["height"] >= TAP
    menu.click()
    expect(nav.get_by_role("link", name="Admin")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert too_small(page) == []
    nav.get_by_role("link", name="Admin").click()
    expect(page.locator("h1")).to_have_text("Admin")
    expect(nav.get_by_role("link", name="Dashboard")).to_be_hidden()  # a new page opens with the menu folded


def test_on_a_desktop_the_navigation_shows_without_a_menu(page_as):
    page = page_as("admin")
    expect(page.locator("header .menu > summary")).to_be_hidden()
    for name in ("Dashboard", "Approvals", "Admin", "API tokens"):
        expect(page.locator("header nav").get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.locator("header.topbar").bounding_box()["height"] <= 64


def test_on_a_phone_every_page_of_a_reviewer_and_an_admin_fits_the_screen_with_44_px_targets(
        api, page_as, new_environment):
    new_environment(WAITS)
    release_id = trigger(api, description="a description long enough to need the room of a wide column")
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    page = page_as("admin", viewport=PHONE)
    pages = ["/", "/approvals", f"/releases/{release_id}", "/projects/svc/environments/env", "/admin",
             "/admin/users", "/admin/projects", "/admin/tokens"]
    for path in pages:
        page.goto(path)
        assert fits_the_screen(page), f"{path} is wider than the phone"
        assert too_small(page) == [], path
    # the tables are cards: no column header row, each cell under its column's name
    page.goto("/admin/users")
    expect(page.locator("table.stacks thead").first).to_be_hidden()
    expect(page.locator("table.stacks td[data-label='Email']").first).to_be_visible()
    assert cells_beyond_the_screen(page, "table.stacks") == []
    page.goto("/projects/svc/environments/env")
    expect(page.locator("td[data-label='Triggered by']").first).to_be_visible()
    assert cells_beyond_the_screen(page, "table.stacks") == []


def test_on_a_phone_a_full_commit_sha_wraps_inside_the_screen(api, page_as, new_environment):
    new_environment(WAITS)
    release_id = trigger(api)
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    sha = api("admin").get(f"/api/v1/releases/{release_id}").json["commit"]
    page = page_as("approver", viewport=PHONE)
    page.goto(f"/releases/{release_id}")
    commit = page.locator("dl.facts code", has_text=sha).first
    expect(commit).to_be_visible()
    box = commit.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert fits_the_screen(page)
