"""The release page's actions, per persona: approve and reject (and a forged post refused),
cancel, withdraw, abort and trigger again, and approving and rejecting in a real browser.

What the page shows and how it polls is in test_release_page_contents.py; the inbox and the
trigger form in test_approvals_page.py and test_trigger_page.py.
"""
from __future__ import annotations

import json
import re

from tests.helpers import release, state, trigger
from tests.web.release_page_support import HX, MIXED, PROCEEDS, WAITS, panel_of, pending, post, release_count

# -- the release page: approve and reject ----------------------------------------------------------

def test_an_approver_sees_approve_and_reject_and_approving_returns_the_updated_panel(
        api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    client = web("approver")
    page = client.get(f"/releases/{release_id}")
    assert page.status_code == 200
    assert ">Approve</button>" in page.text and ">Reject</button>" in page.text
    assert 'hx-confirm="Reject release' in page.text and 'name="comment"' in page.text
    assert "asking for a human" in page.text  # the hook output a reviewer decides on

    response = post(client, f"/releases/{release_id}/approve", {"comment": "ship it"})
    assert response.status_code == 200
    assert 'id="release-panel"' in response.text and "<html" not in response.text
    assert "state-APPROVED" in response.text and "ship it" in response.text
    assert ">Approve</button>" not in response.text
    approved = release(api, release_id)
    assert approved["state"] == "APPROVED" and approved["bot_release_id"] is not None
    digest = approved["approval_digest"]
    assert approved["decisions"] == [{"by": "approver", "decision": "APPROVE", "comment": "ship it", "via": "ui",
                                      "at": approved["decisions"][0]["at"], "rules": ["default"], "digest": digest}]
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    bot = release(api, approved["bot_release_id"])
    assert bot["kind"] == "BOT" and bot["parent_release_id"] == release_id and bot["approval_digest"] == digest
    assert f'href="/releases/{bot["id"]}"' in response.text
    bot_page = client.get(f"/releases/{bot['id']}").text
    assert "Bot release #" in bot_page and f'href="/releases/{release_id}"' in bot_page and "ship it" in bot_page


def test_an_approver_rejects_with_a_comment(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    response = post(web("approver"), f"/releases/{release_id}/reject", {"comment": "not on a Friday"})
    assert response.status_code == 200
    assert "state-REJECTED" in response.text and "not on a Friday" in response.text
    rejected = release(api, release_id)
    assert rejected["state"] == "REJECTED" and rejected["bot_release_id"] is None
    assert rejected["decisions"][0]["decision"] == "REJECT"
    assert rejected["decisions"][0]["comment"] == "not on a Friday"


def test_a_plain_form_post_without_htmx_redirects_back_to_the_release_page(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    client = web("approver")
    response = post(client, f"/releases/{release_id}/approve", htmx=False)
    assert response.status_code == 303 and response.location == f"/releases/{release_id}"
    bot_id = release(api, release_id)["bot_release_id"]
    # the message links the release it names
    assert (f'Approved. <a href="/releases/{bot_id}">Bot release #{bot_id}</a> is applying the changes.'
            in client.get(response.location).text)


def test_a_member_sees_no_buttons_and_a_forged_post_gets_403(app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    client = web("member")
    page = client.get(f"/releases/{release_id}")
    assert page.status_code == 200 and "asking for a human" in page.text
    panel = panel_of(page.text)
    for label in (">Approve</button>", ">Reject</button>", ">Withdraw</button>", ">Cancel release</button>",
                  ">Abort</button>", ">Trigger again</button>"):
        assert label not in panel
    for action in ("approve", "reject", "cancel", "abort", "trigger-again"):
        response = post(client, f"/releases/{release_id}/{action}")
        assert response.status_code == 403, action
        assert response.headers["HX-Retarget"] == "#messages"
        assert "ask an admin for a grant" in response.text or "Only the person who triggered" in response.text
    assert state(api, release_id) == "PENDING_APPROVAL"
    assert release_count(app) == 1


def test_the_triggerer_sees_no_approve_on_their_own_release_and_a_forged_post_is_refused(
        api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, who="approver")
    client = web("approver")
    panel = panel_of(client.get(f"/releases/{release_id}").text)
    assert ">Approve</button>" not in panel and ">Reject</button>" not in panel
    assert ">Withdraw</button>" in panel  # a triggerer withdraws rather than rejects
    response = post(client, f"/releases/{release_id}/approve")
    assert response.status_code == 403
    assert "You triggered this release, so someone else must approve or reject it" in response.text
    assert state(api, release_id) == "PENDING_APPROVAL"


def test_self_approval_shows_the_buttons_when_the_environment_allows_it(api, web, new_environment, run_jobs):
    new_environment(WAITS, allow_self_approval=True)
    release_id = pending(api, run_jobs, who="approver")
    client = web("approver")
    assert ">Approve</button>" in client.get(f"/releases/{release_id}").text
    assert post(client, f"/releases/{release_id}/approve").status_code == 200
    assert state(api, release_id) == "APPROVED"


def test_an_anonymous_visitor_is_sent_to_sign_in_and_fragments_answer_401_with_hx_redirect(
        app, api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    client = app.test_client()
    response = client.get(f"/releases/{release_id}")
    assert response.status_code == 302 and response.location == f"/sign-in?next=/releases/{release_id}"
    for url in (f"/fragments/releases/{release_id}/live", "/fragments/approvals", "/fragments/approvals-count"):
        response = client.get(url, headers={"HX-Request": "true", "HX-Current-URL": "http://x/approvals"})
        assert response.status_code == 401, url
        assert response.headers["HX-Redirect"] == "/sign-in?next=/approvals"
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/sign-in").text).group(1)
    response = client.post(f"/releases/{release_id}/approve", headers={"X-CSRFToken": token, **HX})
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/sign-in?next=")
    assert state(api, release_id) == "PENDING_APPROVAL"


def test_a_second_approve_gets_409_retargeted_into_messages(api, web, new_environment, run_jobs, people):
    people.add("second", "approve_release")
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    first, second = web("approver"), web("second")
    stale_page = second.get(f"/releases/{release_id}").text
    assert ">Approve</button>" in stale_page
    assert post(first, f"/releases/{release_id}/approve").status_code == 200
    response = post(second, f"/releases/{release_id}/approve")
    assert response.status_code == 409
    assert response.headers["HX-Retarget"] == "#messages"
    assert "is approved, so it cannot be approved" in response.text and "<html" not in response.text
    assert len(release(api, release_id)["decisions"]) == 1


def test_a_too_long_comment_is_refused_with_a_sentence(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    response = post(web("approver"), f"/releases/{release_id}/approve", {"comment": "x" * 5001})
    assert response.status_code == 422 and "the limit is 5,000" in response.text
    assert state(api, release_id) == "PENDING_APPROVAL"


# -- cancel, withdraw, abort, trigger again -------------------------------------------------------------

def test_cancel_is_offered_on_a_queued_release_to_its_triggerer_and_to_cancel_release_holders(
        api, web, new_environment, run_jobs, people):
    new_environment(WAITS)
    pending(api, run_jobs, who="approver")  # holds the slot
    queued = trigger(api, "approver")
    assert state(api, queued) == "QUEUED"
    url = f"/releases/{queued}"
    assert ">Cancel release</button>" in panel_of(web("approver").get(url).text)  # own
    assert ">Cancel release</button>" in panel_of(web("dev").get(url).text)  # cancel_release
    member = web("member")
    assert ">Cancel release</button>" not in panel_of(member.get(url).text)
    assert ">Abort</button>" not in panel_of(web("dev").get(url).text)
    assert post(member, f"{url}/cancel").status_code == 403
    response = post(web("dev"), f"{url}/cancel")
    assert response.status_code == 200 and "state-CANCELLED" in response.text
    assert "was cancelled" in response.text and 'id="messages" hx-swap-oob="innerHTML"' in response.text
    assert state(api, queued) == "CANCELLED"


def test_withdraw_is_offered_only_to_the_triggerer_of_a_pending_release(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, who="dev")
    url = f"/releases/{release_id}"
    assert ">Withdraw</button>" in panel_of(web("dev").get(url).text)
    approver = web("approver")
    assert ">Withdraw</button>" not in panel_of(approver.get(url).text)
    response = post(approver, f"{url}/cancel")  # not theirs: reviewers reject instead
    assert response.status_code == 403
    response = post(web("dev"), f"{url}/cancel")
    assert response.status_code == 200 and "was withdrawn" in response.text
    assert state(api, release_id) == "CANCELLED"


def test_abort_is_offered_on_a_running_release_to_cancel_release_holders(api, web, new_environment):
    new_environment(PROCEEDS)
    release_id = trigger(api, "approver")  # READY: the hook has not run yet
    url = f"/releases/{release_id}"
    assert ">Abort</button>" in panel_of(web("dev").get(url).text)
    approver = web("approver")  # the triggerer, without cancel_release
    assert ">Abort</button>" not in panel_of(approver.get(url).text)
    assert post(approver, f"{url}/abort").status_code == 403
    assert post(web("member"), f"{url}/abort").status_code == 403
    response = post(web("dev"), f"{url}/abort")
    assert response.status_code == 200 and "aborted by dev" in response.text
    aborted = release(api, release_id)
    assert aborted["state"] == "FAILED" and aborted["error"] == "aborted by dev"


def test_trigger_again_starts_a_new_release_with_the_same_resources(app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, resources=MIXED)
    api("approver").post(f"/api/v1/releases/{release_id}/reject", json={})
    client = web("approver")
    assert ">Trigger again</button>" in panel_of(client.get(f"/releases/{release_id}").text)
    assert ">Trigger again</button>" not in panel_of(web("member").get(f"/releases/{release_id}").text)
    assert post(web("member"), f"/releases/{release_id}/trigger-again").status_code == 403
    assert release_count(app) == 1

    response = post(client, f"/releases/{release_id}/trigger-again")
    assert response.status_code == 200
    new_id = int(response.headers["HX-Redirect"].rsplit("/", 1)[1])
    again = release(api, new_id)
    assert new_id != release_id and again["resources"] == MIXED and again["triggered_by"] == "approver"
    assert (f'<a href="/releases/{new_id}">Release #{new_id}</a> was triggered with the same changes'
            in client.get(f"/releases/{new_id}").text)

    plain = post(client, f"/releases/{new_id}/trigger-again", htmx=False)
    assert plain.status_code == 303 and plain.location.startswith("/releases/")


def test_an_unknown_release_is_a_404_page(web):
    response = web("member").get("/releases/999")
    assert response.status_code == 404 and "Release #999 does not exist." in response.text


# -- in a real browser ----------------------------------------------------------------------------------------

def test_in_a_browser_an_approver_approves_with_a_comment_and_the_page_updates_in_place(
        api, page_as, new_environment):
    from playwright.sync_api import expect

    from tests.helpers import wait_for

    new_environment(WAITS)
    release_id = trigger(api, "dev", resources=MIXED)
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    page = page_as("approver")
    expect(page.locator("#approvals-count")).to_have_text("1")
    page.get_by_role("link", name="Approvals").click()
    page.get_by_role("link", name=f"Release #{release_id}").click()
    expect(page.locator("#release-panel .state")).to_have_text("Pending approval")
    expect(page.locator("#resources h3.destructive")).to_have_count(2)
    page.get_by_label("Comment").fill("looks right")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#release-panel .state").first).to_have_text("Approved")
    expect(page.locator("#messages")).to_contain_text("Approved. Bot release")
    expect(page.locator("#release-panel")).to_contain_text("looks right")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.locator("#approvals-count")).to_have_text("")
    bot_id = release(api, release_id)["bot_release_id"]
    # one release, one identity: the same page follows its bot release live to the end
    expect(page.locator("#applied-as")).to_contain_text(f"Applied as bot release #{bot_id}")
    expect(page.locator("#applied-as .state")).to_have_text("Succeeded")
    page.locator("#applied-as").get_by_role("link", name=f"bot release #{bot_id}").click()
    expect(page.locator("#release-panel .state")).to_have_text("Succeeded")


def test_in_a_browser_reject_asks_for_confirmation_and_a_triggered_release_is_followed_live(
        api, page_as, new_environment):
    from playwright.sync_api import expect

    from tests.helpers import wait_for

    new_environment(WAITS)
    release_id = trigger(api, "dev")
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    page = page_as("approver")
    page.goto(f"/releases/{release_id}")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#release-panel .state")).to_have_text("Pending approval")  # dismissed: nothing sent
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#release-panel .state")).to_have_text("Rejected")

    page.goto("/trigger")
    page.get_by_label("Resource changes (JSON)").fill(json.dumps(MIXED[:1]))
    page.get_by_role("button", name="Trigger release").click()
    expect(page.locator("#messages")).to_contain_text("was triggered on svc/env")
    # the hook runs in the real worker; the page follows it to the pending state without a reload
    expect(page.locator("#release-panel .state")).to_have_text("Pending approval")
    expect(page.locator("#release-live pre.log")).to_contain_text("asking for a human")
    expect(page.get_by_role("button", name="Withdraw")).to_be_visible()  # their own: withdraw, not approve
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
