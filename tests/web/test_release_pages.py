"""The release page, the pending-approvals inbox and the trigger form, per persona."""
from __future__ import annotations

import io
import json
import re

import sqlalchemy as sa

from tests.helpers import CHANGE, release, state, trigger
from webapp.extensions import db
from webapp.models import Environment, Release

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
    assert approved["decisions"] == [{"by": "approver", "decision": "APPROVE", "comment": "ship it", "via": "ui",
                                      "at": approved["decisions"][0]["at"]}]
    bot = release(api, approved["bot_release_id"])
    assert bot["kind"] == "BOT" and bot["parent_release_id"] == release_id
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
    assert "Approved. Bot release" in client.get(response.location).text


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

def test_resources_are_grouped_by_change_type_with_counts_and_destructive_marks(api, web, new_environment,
                                                                               run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, resources=MIXED)
    page = web("member").get(f"/releases/{release_id}").text
    section = page[page.index('id="resources"'):]
    groups = re.findall(r'<h3 id="change-(\w+)" class="change-group( destructive)?">\s*\1 '
                        r'<span class="count">(\d+)</span>( destructive)?</h3>', section)
    assert [(name, count, bool(marked), bool(word)) for name, marked, count, word in groups] == [
        ("CREATE", "2", False, False), ("DELETE", "1", True, True),
        ("UPDATE_IN_PLACE", "1", False, False), ("REPLACE", "1", True, True)]
    assert section.count('class="destructive-row"') == 2
    assert "db/main.json" in section and "q/jobs.json" in section
    # the summary by the buttons counts them too, destructive ones named as such
    assert '<a href="#change-DELETE" class="destructive">1 DELETE (destructive)</a>' in page
    assert '<a href="#change-CREATE">2 CREATE</a>' in page


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
    assert f"Release #{new_id} was triggered with the same changes" in client.get(f"/releases/{new_id}").text

    plain = post(client, f"/releases/{new_id}/trigger-again", htmx=False)
    assert plain.status_code == 303 and plain.location.startswith("/releases/")


def test_an_unknown_release_is_a_404_page(web):
    response = web("member").get("/releases/999")
    assert response.status_code == 404 and "Release #999 does not exist." in response.text


# -- the pending-approvals inbox -------------------------------------------------------------------------

def test_the_inbox_lists_only_what_the_user_may_decide_oldest_first(app, api, web, new_environment, run_jobs,
                                                                  people):
    new_environment(WAITS, name="first")
    new_environment(WAITS, name="second")
    new_environment(WAITS, name="third")
    with app.app_context():
        second = db.session.scalar(sa.select(Environment).where(Environment.name == "second"))
        people.add("scoped", "approve_release", environment=second)
    older = pending(api, run_jobs, path="svc/first", resources=MIXED)
    newer = pending(api, run_jobs, path="svc/second")
    own = pending(api, run_jobs, who="approver", path="svc/third")

    page = web("approver").get("/approvals").text
    listed = [int(n) for n in re.findall(r'<a href="/releases/(\d+)">Release #', page)]
    assert listed == [older, newer]  # not their own release, oldest first
    assert 'href="/projects/svc/environments/first"' in page and "dev" in page
    assert "2 CREATE" in page and "1 DELETE (destructive)" in page

    scoped = web("scoped").get("/approvals").text
    assert re.findall(r'<a href="/releases/(\d+)">Release #', scoped) == [str(newer)]
    assert f"Release #{own}" in web("admin").get("/approvals").text  # someone else's for the admin
    for name in ("member", "dev"):
        assert "Nothing is waiting for you." in web(name).get("/approvals").text


def test_the_inbox_list_refreshes_itself_and_answers_204_when_nothing_changed(api, web, new_environment,
                                                                            run_jobs):
    new_environment(WAITS)
    client = web("approver")
    page = client.get("/approvals").text
    url = re.search(r'id="approvals-list" hx-get="([^"]+)" hx-trigger="rg-poll from:body"', page).group(1)
    assert client.get(url, headers=HX).status_code == 204
    release_id = pending(api, run_jobs)
    fragment = client.get(url, headers=HX)
    assert fragment.status_code == 200 and f"Release #{release_id}" in fragment.text
    assert "<html" not in fragment.text


def nav_count(client, url: str = "/fragments/approvals-count") -> tuple[str, str]:
    """The badge inside the navigation count, and the URL its next poll asks."""
    response = client.get(url, headers=HX)
    assert response.status_code == 200
    found = re.fullmatch(r'<span id="approvals-count" hx-get="([^"]+)" hx-trigger="rg-poll from:body" '
                         r'hx-swap="outerHTML">(.*)</span>', response.text, re.S)
    return found.group(2), found.group(1)


def test_the_navigation_count_shows_how_many_wait_and_is_empty_at_zero(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    new_environment(WAITS, name="other")
    approver, member = web("approver"), web("member")
    page = approver.get("/").text
    assert ('<span id="approvals-count" hx-get="/fragments/approvals-count" hx-trigger="load, rg-poll from:body" '
            'hx-swap="outerHTML"></span>') in page  # asked for once the page has loaded
    badge, next_poll = nav_count(approver)
    assert badge == ""
    assert approver.get(next_poll, headers=HX).status_code == 204  # nothing changed since
    pending(api, run_jobs)
    pending(api, run_jobs, path="svc/other")
    badge, _ = nav_count(approver, next_poll)
    assert re.fullmatch(r'<span class="count" title="2 releases waiting for your decision">2</span>', badge)
    assert nav_count(member)[0] == ""
    assert nav_count(web("dev"))[0] == ""  # their own releases


def test_the_navigation_count_is_one_count_query(app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    pending(api, run_jobs)
    client = web("approver")
    statements: list[str] = []
    with app.app_context():
        engine = db.engine
    listen = sa.event.listen
    record = lambda _conn, _cursor, statement, *_: statements.append(statement)  # noqa: E731
    listen(engine, "before_cursor_execute", record)
    try:
        assert nav_count(client)[0].endswith(">1</span>")
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    about_releases = [s for s in statements if "releases" in s]
    assert len(about_releases) == 1 and "count(" in about_releases[0].lower()


# -- the trigger form -------------------------------------------------------------------------------------

def test_the_trigger_form_offers_the_environments_the_user_may_trigger_on(app, web, new_environment, people):
    new_environment(WAITS)
    new_environment(WAITS, name="other")
    with app.app_context():
        other = db.session.scalar(sa.select(Environment).where(Environment.name == "other"))
        people.add("scoped", "trigger_release", environment=other)
    page = web("dev").get("/trigger").text
    assert 'enctype="multipart/form-data"' in page and 'type="file" name="plan"' in page
    assert re.findall(r'<option value="([^"]+)"', page) == ["svc/env", "svc/other"]
    assert re.findall(r'<option value="([^"]+)"', web("scoped").get("/trigger").text) == ["svc/other"]
    chosen = web("dev").get("/trigger?environment=svc/other").text
    assert '<option value="svc/other" selected>' in chosen


def test_triggering_from_the_form_redirects_to_the_new_release(app, api, web, new_environment):
    new_environment(WAITS)
    client = web("dev")
    key = re.search(r'name="idempotency_key" value="([^"]+)"', client.get("/trigger").text).group(1)
    form = {"csrf_token": client.csrf, "environment": "svc/env", "resources": json.dumps(MIXED), "ref": "main",
            "description": "from the form", "idempotency_key": key}
    response = client.post("/trigger", data=form)
    assert response.status_code == 303
    release_id = int(response.location.rsplit("/", 1)[1])
    made = release(api, release_id)
    assert made["resources"] == MIXED and made["ref"] == "main" and made["description"] == "from the form"
    assert made["triggered_by"] == "dev"
    assert "was triggered on svc/env" in client.get(response.location).text
    again = client.post("/trigger", data=form)  # a double submit returns the same release
    assert again.location == response.location and release_count(app) == 1
    assert "This form was already sent" in client.get(again.location).text


def test_bad_json_is_explained_beside_the_field_and_nothing_is_written(app, web, new_environment):
    new_environment(WAITS)
    client = web("dev")
    typed = '[{"resourceType": "service",'
    response = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                             "resources": typed, "description": "kept"})
    assert response.status_code == 400
    error = re.search(r'<span class="field-error" id="resources-error">([^<]+)</span>', response.text).group(1)
    assert "not valid JSON" in error and "line 1" in error
    assert ">[{&#34;resourceType&#34;: &#34;service&#34;,</textarea>" in response.text  # what was typed stays
    assert ">kept</textarea>" in response.text and '<option value="svc/env" selected>' in response.text
    assert release_count(app) == 0


def test_an_invalid_change_type_gets_the_apis_sentence_beside_the_field(app, web, new_environment):
    new_environment(WAITS)
    client = web("dev")
    wrong = [{**MIXED[0], "changeType": "EXPLODE"}]
    response = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                             "resources": json.dumps(wrong)})
    assert response.status_code == 422
    assert 'resources[0].changeType &#34;EXPLODE&#34; is not a change type' in response.text
    bad_ref = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                            "resources": "[]", "ref": "-x"})
    assert bad_ref.status_code == 422 and 'id="ref-error"' in bad_ref.text and "must not start with" in bad_ref.text
    empty = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env"})
    assert empty.status_code == 400 and "Paste the resources JSON" in empty.text
    deep = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                         "resources": "[" * 100_000 + "]" * 100_000})
    assert deep.status_code == 400 and "nests too deeply" in deep.text
    assert release_count(app) == 0


def test_a_terraform_plan_file_upload_triggers_its_changes(api, web, new_environment):
    new_environment(WAITS)
    plan = {"format_version": "1.2", "resource_changes": [
        {"address": "aws_s3_bucket.logs", "type": "aws_s3_bucket", "name": "logs", "change": {"actions": ["create"]}},
        {"address": "aws_db_instance.main", "type": "aws_db_instance", "name": "main",
         "change": {"actions": ["delete", "create"]}, "action_reason": "replace_because_cannot_update"},
        {"address": "data.aws_ami.base", "type": "aws_ami", "name": "base", "change": {"actions": ["read"]}},
    ]}
    client = web("dev")
    response = client.post("/trigger", content_type="multipart/form-data", data={
        "csrf_token": client.csrf, "environment": "svc/env", "resources": "",
        "plan": (io.BytesIO(json.dumps(plan).encode()), "plan.json")})
    assert response.status_code == 303
    made = release(api, int(response.location.rsplit("/", 1)[1]))
    assert [(r["resourcePath"], r["changeType"]) for r in made["resources"]] == [
        ("aws_s3_bucket.logs", "CREATE"), ("aws_db_instance.main", "RECREATE")]
    page = client.get(response.location).text
    assert "RECREATE" in page and "replace_because_cannot_update" in page

    broken = client.post("/trigger", content_type="multipart/form-data", data={
        "csrf_token": client.csrf, "environment": "svc/env",
        "plan": (io.BytesIO(b'{"values": {}}'), "state.json")})
    assert broken.status_code == 400 and 'id="plan-error"' in broken.text
    assert "send the output of `terraform show -json &lt;planfile&gt;`" in broken.text
    assert "The uploaded plan has neither" in broken.text and "terraform_plan" not in broken.text


def test_a_plan_that_changes_nothing_is_triggered_only_once_confirmed(app, api, web, new_environment):
    """A plan without resource_changes (or a pasted []) would run the deploy for nothing: the
    form says so and asks first; confirmed, it triggers (the pasted [] stands in for the file)."""
    new_environment(WAITS)
    client = web("dev")
    for data in ({"plan": (io.BytesIO(b'{"format_version": "1.2"}'), "plan.json"), "resources": ""},
                 {"resources": "[]"}):
        asked = client.post("/trigger", content_type="multipart/form-data",
                            data={"csrf_token": client.csrf, "environment": "svc/env", **data})
        assert asked.status_code == 422 and "it changes no resources" in asked.text
        assert 'name="confirm_empty"' in asked.text and ">[]</textarea>" in asked.text
        assert release_count(app) == 0
    confirmed = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                              "resources": "[]", "confirm_empty": "1"})
    assert confirmed.status_code == 303
    assert release(api, int(confirmed.location.rsplit("/", 1)[1]))["resources"] == []


def test_the_api_accepts_a_release_that_changes_nothing_with_a_warning(api, new_environment):
    new_environment(WAITS)
    empty = api("dev").post("/api/v1/projects/svc/environments/env/releases",
                            json={"terraform_plan": {"format_version": "1.2"}})
    assert empty.status_code == 202 and empty.json["resources"] == []
    assert empty.json["warnings"] == ["The release changes no resources (the plan lists none, or the list is "
                                      "empty), yet its release command runs all the same."]
    some = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"resources": CHANGE})
    assert some.status_code == 202 and some.json["warnings"] == []


def test_an_uploaded_plan_with_errored_as_a_string_is_refused_beside_the_plan_field(app, web, new_environment):
    from webapp.extensions import db
    from webapp.models import Release

    new_environment(WAITS)
    client = web("dev")
    plan = {"format_version": "1.2", "errored": "yes", "resource_changes": []}
    response = client.post("/trigger", content_type="multipart/form-data", data={
        "csrf_token": client.csrf, "environment": "svc/env", "resources": "",
        "plan": (io.BytesIO(json.dumps(plan).encode()), "plan.json")})
    assert response.status_code == 422 and 'id="plan-error"' in response.text
    assert "The Terraform plan&#39;s &#34;errored&#34; must be true or false" in response.text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Release.id))) == 0


def test_a_member_without_trigger_release_gets_no_form_and_a_403_on_post(app, web, new_environment):
    new_environment(WAITS)
    client = web("member")
    page = client.get("/trigger")
    assert page.status_code == 200 and "<form method=\"post\" action=\"/trigger\"" not in page.text
    assert "ask an admin for a grant" in page.text
    response = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                             "resources": json.dumps(MIXED)})
    assert response.status_code == 403 and "Trigger release" in response.text
    assert release_count(app) == 0


def test_an_unknown_environment_in_the_trigger_form_is_a_404(app, web, new_environment):
    new_environment(WAITS)
    client = web("dev")
    response = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/nope",
                                             "resources": "[]"})
    assert response.status_code == 404 and "choose one from the list" in response.text
    assert release_count(app) == 0


def test_an_anonymous_visitor_cannot_see_or_use_the_trigger_form_or_inbox(app, new_environment):
    new_environment(WAITS)
    client = app.test_client()
    for url in ("/trigger", "/approvals"):
        response = client.get(url)
        assert response.status_code == 302 and response.location.startswith("/sign-in?next=")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/sign-in").text).group(1)
    response = client.post("/trigger", data={"csrf_token": token, "environment": "svc/env", "resources": "[]"})
    assert response.status_code == 302 and response.location.startswith("/sign-in")
    assert release_count(app) == 0


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
    page.locator("#release-panel").get_by_role("link", name=f"Release #{bot_id}").click()
    expect(page.locator("#release-panel .state")).to_have_text("Succeeded")  # followed live to the end


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
