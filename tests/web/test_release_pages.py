"""The release page, per persona (the inbox and the trigger form: test_approvals_page.py,
test_trigger_page.py)."""
from __future__ import annotations

import json
import re

import sqlalchemy as sa

from tests.helpers import release, state, trigger
from webapp.extensions import db
from webapp.models import Release

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "echo asking for a human; exit 2\n"}
PROCEEDS = {"svc/pre_release_hooks/pre_release_hook.sh": "echo fine; exit 0\n"}
MIXED = [
    {"resourceType": "service", "resourceName": "api", "resourcePath": "svc/api.json", "changeType": "CREATE"},
    {"resourceType": "database", "resourceName": "main", "resourcePath": "db/main.json", "changeType": "DELETE"},
    {"resourceType": "queue", "resourceName": "jobs", "resourcePath": "q/jobs.json", "changeType": "REPLACE"},
    {"resourceType": "service", "resourceName": "web", "resourcePath": "svc/web.json", "changeType": "CREATE"},
    {"resourceType": "cache", "resourceName": "c1", "resourcePath": "c/c1.json", "changeType": "UPDATE_IN_PLACE"},
]
HX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/releases/1"}


def pending(api, run_jobs, who: str = "dev", **kwargs) -> int:
    release_id = trigger(api, who, **kwargs)
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    return release_id


def post(client, url: str, data: dict | None = None, htmx: bool = True):
    headers = {"X-CSRFToken": client.csrf, **(HX if htmx else {})}
    return client.post(url, data=data or {}, headers=headers)


def release_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(Release.id)))


def panel_of(html: str) -> str:
    """The #release-panel part of a page (buttons and decisions)."""
    start = html.index('id="release-panel"')
    return html[start:html.index('id="resources"')] if 'id="resources"' in html else html[start:]


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


# -- the release page: what it shows ------------------------------------------------------------------

def test_resources_are_grouped_by_change_type_destructive_first_with_counts_and_marks(api, web, new_environment,
                                                                                     run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, resources=MIXED)
    page = web("member").get(f"/releases/{release_id}").text
    section = page[page.index('id="resources"'):]
    groups = re.findall(r'<h3 id="change-(\w+)" class="change-group( destructive)?">\s*\1 '
                        r'<span class="count">(\d+)</span>( destructive)?</h3>', section)
    assert [(name, count, bool(marked), bool(word)) for name, marked, count, word in groups] == [
        ("DELETE", "1", True, True), ("REPLACE", "1", True, True),
        ("UPDATE_IN_PLACE", "1", False, False), ("CREATE", "2", False, False)]
    assert section.count('class="destructive-row"') == 2
    assert "db/main.json" in section and "q/jobs.json" in section
    # the summary by the buttons counts them too, destructive ones named as such
    assert '<a href="#change-DELETE" class="destructive">1 DELETE (destructive)</a>' in page
    assert '<a href="#change-CREATE">2 CREATE</a>' in page


def test_resource_groups_put_every_destructive_type_before_the_others():
    from webapp.views.release_pages import resource_groups

    kinds = ["NO_OPERATION", "CREATE", "UPDATE_IN_PLACE", "REPLACE", "RECREATE", "DELETE"]
    groups = resource_groups([{"changeType": kind, "resourceName": kind} for kind in kinds])
    assert [group["change_type"] for group in groups] == [
        "DELETE", "RECREATE", "REPLACE", "UPDATE_IN_PLACE", "CREATE", "NO_OPERATION"]
    assert [group["destructive"] for group in groups] == [True, True, True, False, False, False]


def test_the_page_shows_summary_hook_output_and_an_audit_trail_oldest_first(api, web, new_environment,
                                                                             run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, description="nightly", ref="main")
    page = web("member").get(f"/releases/{release_id}").text
    data = release(api, release_id)
    assert 'href="/projects/svc/environments/env"' in page
    assert data["commit"] in page and data["hook"]["ref_commit"] in page
    assert "svc/pre_release_hooks/pre_release_hook.sh" in page and "nightly" in page
    assert '<pre class="log" tabindex="0" aria-label="Pre-release hook output"><code>asking for a human' in page
    trail = page[page.index('id="audit-title"'):]
    assert trail.index("triggered") < trail.index("took the slot") < trail.index("pre-release hook exited 2")
    assert ">dev <span" in trail


def test_the_live_part_polls_while_running_and_stops_once_terminal(app, api, web, new_environment, run_jobs):
    new_environment(PROCEEDS)
    release_id = trigger(api, "dev")  # dispatched at once: READY, its hook job not run yet
    client = web("member")
    page = client.get(f"/releases/{release_id}").text
    url = re.search(r'id="release-live" class="stack" hx-get="([^"]+)" hx-trigger="rg-poll from:body" '
                    r'hx-swap="outerHTML"', page).group(1).replace("&amp;", "&")
    assert "o=READY." in url and "s=READY" in url

    nothing_changed = client.get(url, headers=HX)
    assert nothing_changed.status_code == 204 and nothing_changed.text == ""

    run_jobs()  # the hook exits 0, nothing to run: SUCCEEDED
    assert state(api, release_id) == "SUCCEEDED"
    fragment = client.get(url, headers=HX)
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert 'id="release-live"' in fragment.text and "hx-trigger" not in fragment.text.split(">", 1)[0]
    assert "fine" in fragment.text and "No release command is set" in fragment.text
    # the state moved, so the panel comes along out of band with its new badge
    assert 'id="release-panel" class="stack" hx-swap-oob="true"' in fragment.text
    assert "state-SUCCEEDED" in fragment.text
    final = client.get(f"/releases/{release_id}").text
    assert 'id="release-live" class="stack">' in final  # terminal: no hx-get, no polling


def test_new_log_lines_reach_a_running_release_without_an_audit_event(app, api, web, new_environment):
    new_environment(PROCEEDS)
    release_id = trigger(api, "dev")
    client = web("member")
    page = client.get(f"/releases/{release_id}").text
    url = re.search(r'id="release-live" class="stack" hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")
    from webapp import releases as state_machine

    with app.app_context():  # what a worker's heartbeat does: output, no audit row, no version bump
        state_machine.heartbeat(release_id, "READY", hook_output="step one done\n")
    fragment = client.get(url, headers=HX)
    assert fragment.status_code == 200 and "step one done" in fragment.text
    assert 'class="log follow"' in fragment.text  # the log keeps its newest lines in view
    assert "hx-swap-oob" not in fragment.text  # same state: the panel (and a typed comment) is left alone


def test_a_pending_release_polls_but_answers_204_until_something_changes(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    client = web("approver")
    page = client.get(f"/releases/{release_id}").text
    url = re.search(r'id="release-live" class="stack" hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert "o=" not in url
    assert client.get(url, headers=HX).status_code == 204
    api("approver").post(f"/api/v1/releases/{release_id}/approve", json={"comment": "from elsewhere"})
    fragment = client.get(url, headers=HX)
    assert fragment.status_code == 200
    assert "state-APPROVED" in fragment.text and ">Approve</button>" not in fragment.text


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
