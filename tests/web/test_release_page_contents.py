"""What the release page shows: resources grouped by change type, destructive first; the
summary, the hook's output and the audit trail; and its live part, which polls while the
release can still change, answers 204 until something does, and stops once it is terminal.
"""
from __future__ import annotations

import re

from tests.helpers import release, state, trigger
from tests.web.release_page_support import HX, MIXED, PROCEEDS, WAITS, pending

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
    from webapp.intake.resources import resource_groups

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
