"""What people see of approval rules: the hook's reason first, how far the rules are met, an
Approve button that says what it counts for (or why there is none), on the release page, the
dashboard, the inbox and the navigation count, and through the API."""
from __future__ import annotations

import html
import re

from tests.helpers import release, state, trigger
from tests.rules_support import REASON, SRE_MET, WAITING_FOR_BOTH, two_rules
from tests.web.release_page_support import HX, PROCEEDS, panel_of, pending, post
from tests.web.test_approvals_page import nav_count

ALREADY = "You approved this release already; the rules still unmet need other people."
NOT_IN_THE_GROUPS = "Your approval would count for no rule still unmet"


def text_of(page: str) -> str:
    """What a person reads: the markup's text, spaces folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def buttons(page: str) -> list[str]:
    return [text_of(label) for label in re.findall(r"<button[^>]*>(.*?)</button>", panel_of(page), re.S)]


def decide_buttons(page: str) -> list[str]:
    return [label for label in buttons(page) if label.startswith(("Approve", "Reject"))]


def listed(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a href="/releases/(\d+)">Release #', page)]


# -- the release page ---------------------------------------------------------------------------------

def test_the_release_page_opens_with_the_hooks_reason_then_shows_how_far_the_rules_are_met(
        app, api, web, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs)
    page = web("member").get(f"/releases/{release_id}").text
    panel = text_of(page[page.index('<div id="release-panel"'):page.index('id="resources"')])
    assert panel.startswith(f"Release #{release_id} Pending approval Why it waits: {REASON} waiting")
    assert f"Approval {WAITING_FOR_BOTH}" in panel
    assert decide_buttons(page) == []  # a read-only member: nothing to click, only who can decide
    assert 'id="why-not"' not in page and "alice, bob, carol can decide" in panel


def test_the_approve_button_says_which_rule_the_click_counts_for(app, api, web, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs)
    assert decide_buttons(web("alice").get(f"/releases/{release_id}").text) == ["Approve as sre", "Reject"]
    assert decide_buttons(web("bob").get(f"/releases/{release_id}").text) == ["Approve as dba", "Reject"]


def test_the_default_rule_alone_keeps_a_plain_approve_button(api, web, new_environment, run_jobs):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = pending(api, run_jobs)
    page = web("approver").get(f"/releases/{release_id}").text
    assert decide_buttons(page) == ["Approve", "Reject"]
    assert "Approval 0 of 1 rule met \u2014 default: waiting (needs 1 of 2 who may approve)" in text_of(page)
    assert 'id="approval-reason"' not in page  # the hook gave no reason


def test_after_approving_one_sees_the_progress_and_no_approve_button_only_why(
        app, api, web, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs)
    alice = web("alice")
    response = post(alice, f"/releases/{release_id}/approve", {"comment": "sre is fine"})
    assert response.status_code == 200
    shown = text_of(response.text)
    assert f"Your approval counted for sre; the release waits for the rest: {SRE_MET}." in shown
    assert f"Approval {SRE_MET}" in shown and "state-PENDING_APPROVAL" in response.text
    assert "Approved by alice as sre" in shown and "sre is fine" in shown
    page = alice.get(f"/releases/{release_id}").text
    assert decide_buttons(page) == ["Reject"]  # who could count may still reject
    assert ALREADY in text_of(page)
    assert state(api, release_id) == "PENDING_APPROVAL"


def test_someone_outside_the_rules_groups_sees_why_and_neither_button_and_a_forged_approve_gets_409(
        app, api, web, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs)
    approver = web("approver")  # may decide svc/env, but is in neither sre nor dba
    page = approver.get(f"/releases/{release_id}").text
    assert decide_buttons(page) == []
    why = re.search(r'<p class="why-not" id="why-not">([^<]*)</p>', page).group(1)
    assert html.unescape(why) == ("Your approval would count for no rule still unmet (sre needs 1 more from group "
                                  "sre; dba needs 1 more from group dba); someone who can count must approve.")
    response = post(approver, f"/releases/{release_id}/approve")
    assert response.status_code == 409 and response.headers["HX-Retarget"] == "#messages"
    assert NOT_IN_THE_GROUPS in html.unescape(response.text)
    assert post(approver, f"/releases/{release_id}/reject").status_code == 403
    after = release(api, release_id)
    assert after["state"] == "PENDING_APPROVAL" and after["decisions"] == []


def test_the_second_rule_approves_and_the_page_shows_the_digest_and_what_each_approval_counted_for(
        app, api, web, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs)
    assert post(web("alice"), f"/releases/{release_id}/approve").status_code == 200
    response = post(web("carol"), f"/releases/{release_id}/approve", {"comment": "dba ok"})
    assert response.status_code == 200 and "state-APPROVED" in response.text
    approved = release(api, release_id)
    digest = approved["approval_digest"]
    assert f"Approved. Bot release #{approved['bot_release_id']} is applying the changes." in text_of(response.text)
    for url in (f"/releases/{release_id}", f"/releases/{approved['bot_release_id']}"):
        page = web("member").get(url).text
        shown = text_of(panel_of(page))
        assert f'<code class="digest" title="sha256:{digest}">sha256:{digest[:12]}…</code>' in page, url
        assert f"Approved digest sha256:{digest[:12]}…" in shown, url
        assert "Approved by alice as sre" in shown and "Approved by carol as dba" in shown, url
    assert "Approval 2 of 2 rules met \u2014 sre: approved by alice, dba: approved by carol" in text_of(
        web("member").get(f"/releases/{release_id}").text)


def test_a_partial_approval_elsewhere_brings_the_fresh_panel_to_an_open_page(
        app, api, web, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs)
    bob = web("bob")
    page = bob.get(f"/releases/{release_id}").text
    url = re.search(r'id="release-live" class="stack" hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert bob.get(url, headers=HX).status_code == 204
    assert api("alice").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200
    fragment = bob.get(url, headers=HX)
    assert fragment.status_code == 200  # the state did not move, yet the panel comes along
    assert 'id="release-panel" class="stack" hx-swap-oob="true"' in fragment.text
    assert SRE_MET in text_of(fragment.text) and "Approve as dba" in text_of(fragment.text)


# -- the API -------------------------------------------------------------------------------------------

def test_the_api_answers_a_partial_approval_with_the_progress_and_the_last_with_the_bot_release(
        app, api, web, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs)
    waiting = release(api, release_id)
    assert waiting["approval"] == {"rules": [
        {"name": "sre", "group": "sre", "approvals": 1, "approved_by": [], "met": False},
        {"name": "dba", "group": "dba", "approvals": 1, "approved_by": [], "met": False}],
        "reason": REASON, "met": False}

    partial = api("alice").post(f"/api/v1/releases/{release_id}/approve", json={"comment": "sre ok"})
    assert partial.status_code == 200, partial.json
    assert partial.json["id"] == release_id and partial.json["state"] == "PENDING_APPROVAL"
    assert partial.json["bot_release_id"] is None and partial.json["approval_digest"] is None
    assert [(r["name"], r["approved_by"], r["met"]) for r in partial.json["approval"]["rules"]] == [
        ("sre", ["alice"], True), ("dba", [], False)]
    assert partial.json["approval"]["met"] is False
    [decision] = partial.json["decisions"]
    assert decision["rules"] == ["sre"] and re.fullmatch(r"[0-9a-f]{64}", decision["digest"])

    again = api("alice").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert again.status_code == 409 and again.json["error"] == ALREADY
    outside = api("approver").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert outside.status_code == 409 and outside.json["error"].startswith(NOT_IN_THE_GROUPS)
    assert "dba needs 1 more from group dba" in outside.json["error"]

    final = api("bob").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert final.status_code == 200, final.json
    assert final.json["id"] == release_id and final.json["state"] == "APPROVED"
    assert final.json["approval"]["met"] is True and final.json["bot_release_id"] is not None
    assert [d["rules"] for d in final.json["decisions"]] == [["sre"], ["dba"]]
    assert {d["digest"] for d in final.json["decisions"]} == {final.json["approval_digest"]}
    bot = release(api, final.json["bot_release_id"])
    assert bot["kind"] == "BOT" and bot["approval_digest"] == final.json["approval_digest"]
    assert bot["approval"] is None  # the bot release waited for nothing itself


def test_a_release_that_never_waited_has_no_approval_in_the_api(api, new_environment, run_jobs):
    new_environment(PROCEEDS)
    release_id = trigger(api)
    run_jobs()
    done = release(api, release_id)
    assert done["state"] == "SUCCEEDED" and done["approval"] is None and done["approval_digest"] is None


# -- the inbox, the navigation count, the dashboard --------------------------------------------------------

def test_the_inbox_and_the_count_hold_only_releases_the_users_approval_would_still_count_for(
        app, api, web, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}, name="plain")  # the default rule
    ruled = pending(api, run_jobs)
    plain = pending(api, run_jobs, path="svc/plain")

    def inbox(name: str) -> tuple[list[int], str, str]:
        client = web(name)
        page = client.get("/approvals").text
        return listed(page), nav_count(client)[0], text_of(page)

    ids, badge, shown = inbox("alice")
    assert ids == [ruled, plain] and ">2</span>" in badge
    row = shown[shown.index(f"{REASON} Release #{ruled}"):]  # the reason opens its row
    assert row.index(WAITING_FOR_BOTH) < row.index("Your approval counts for sre") < row.index(f"Release #{plain}")
    ids, badge, _ = inbox("approver")  # in neither group: only the release of the default rule
    assert ids == [plain] and ">1</span>" in badge

    assert api("alice").post(f"/api/v1/releases/{ruled}/approve", json={}).status_code == 200
    ids, badge, _ = inbox("alice")  # counted already
    assert ids == [plain] and ">1</span>" in badge
    ids, badge, shown = inbox("carol")
    assert ids == [ruled, plain] and ">2</span>" in badge
    assert f"{SRE_MET} Your approval counts for dba" in shown
    assert api("bob").post(f"/api/v1/releases/{plain}/approve", json={}).status_code == 200
    ids, badge, shown = inbox("carol")
    assert ids == [ruled] and ">1</span>" in badge


def test_the_dashboard_and_the_environment_page_show_how_far_the_rules_are_met(
        app, api, web, people, new_environment, run_jobs):
    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs)
    member = web("member")
    for url in ("/", "/projects/svc/environments/env"):
        assert f"Waiting for approval {WAITING_FOR_BOTH}" in text_of(member.get(url).text), url
    dashboard = member.get("/").text
    fragment_url = re.search(r'id="dashboard" class="stack" hx-get="([^"]+)"', dashboard).group(1)
    assert member.get(fragment_url, headers=HX).status_code == 204
    assert api("alice").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200
    fragment = member.get(fragment_url, headers=HX)
    assert fragment.status_code == 200 and f"Waiting for approval {SRE_MET}" in text_of(fragment.text)


# -- in a real browser -----------------------------------------------------------------------------------

def test_in_a_browser_two_reviewers_meet_two_rules_and_the_release_is_applied(
        app, api, people, new_environment, page_as):
    from playwright.sync_api import expect

    from tests.helpers import wait_for

    two_rules(app, people, new_environment, release_command="echo applying the approved changes")
    release_id = trigger(api, "dev")
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    bob = page_as("bob")
    bob.goto(f"/releases/{release_id}")  # open before alice approves: it follows her approval live
    expect(bob.locator("#approval-summary")).to_have_text(WAITING_FOR_BOTH)
    alice = page_as("alice")
    alice.goto(f"/releases/{release_id}")
    expect(alice.locator("#decision-reason")).to_contain_text(REASON)
    alice.get_by_role("button", name="Approve as sre").click()
    expect(alice.locator("#approval-summary")).to_have_text(SRE_MET)
    expect(alice.locator("#messages")).to_contain_text("Your approval counted for sre")
    expect(alice.get_by_role("button", name=re.compile("^Approve"))).to_have_count(0)
    expect(alice.locator("#why-not")).to_have_text(ALREADY)

    expect(bob.locator("#approval-summary")).to_contain_text("1 of 2 rules met")
    bob.get_by_label("Comment").fill("the column is unused")
    bob.get_by_role("button", name="Approve as dba").click()
    expect(bob.locator("#release-panel .state").first).to_have_text("Approved")
    expect(bob.locator("#messages")).to_contain_text("Approved. Bot release")
    expect(bob.locator("#approval-summary")).to_have_text(
        "2 of 2 rules met \u2014 sre: approved by alice, dba: approved by bob")
    bot_id = release(api, release_id)["bot_release_id"]
    bob.locator("#applied-as").get_by_role("link", name=f"bot release #{bot_id}").click()
    expect(bob.locator("#release-panel .state")).to_have_text("Succeeded")  # applied, followed live
    expect(bob.locator("#release-live pre.log")).to_contain_text("applying")
