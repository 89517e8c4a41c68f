"""The environment page: its queue in order for every signed-in person, its fragment answering
204 until the queue changes, its history paged by 25 and filtered by state, and a 404 page for a
missing environment (the settings and variables forms: test_environment_settings.py).
"""
from __future__ import annotations

import re

from tests.helpers import trigger
from tests.web.pages_support import (
    HTMX,
    PAGE,
    PLAIN,
    WAITS,
    add_finished_releases,
    pending_with_queue,
    release_links,
    statements,
    touches_releases,
    version_in,
)

# -- environment page: queue and history ----------------------------------------------------------

def test_the_environment_page_shows_the_queue_in_order_to_every_signed_in_person(
        app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    first, second, third = pending_with_queue(api, run_jobs)
    for persona in ("admin", "member"):
        page = web(persona).get(PAGE)
        assert page.status_code == 200
        live = re.search(r'<section id="environment-live".*?</section>', page.text, re.S).group(0)
        assert release_links(live) == [first, second, third]
        assert "Approval workflow" in live and "Waiting for approval" in live
        assert re.search(rf'#1</span>\s*<a href="/releases/{second}"', live)
        assert re.search(rf'#2</span>\s*<a href="/releases/{third}"', live)
    anonymous = app.test_client().get(PAGE)
    assert anonymous.status_code == 302 and "/sign-in" in anonymous.location


def test_a_missing_environment_is_a_404_page_with_a_sentence(app, web, new_environment):
    new_environment(PLAIN)
    response = web("member").get("/projects/svc/environments/nope")
    assert response.status_code == 404 and "There is no environment svc/nope" in response.text


def test_the_environment_fragment_answers_204_until_the_queue_changes(app, api, web, new_environment):
    new_environment(PLAIN, approval_workflow=False, wait_for_external_finish=True)
    path = "/fragments/projects/svc/environments/env"
    triggered = []
    for persona in ("dev", "member"):
        client = web(persona)
        version = version_in(client.get(PAGE).text, path)
        with statements(app) as seen:
            assert client.get(f"{path}?v={version}", headers=HTMX).status_code == 204
        assert [sql for sql in seen if touches_releases(sql)] == []
        triggered.append(trigger(api))
        changed = client.get(f"{path}?v={version}", headers=HTMX)
        assert changed.status_code == 200 and changed.text.lstrip().startswith('<section id="environment-live"')
        assert release_links(changed.text) == triggered and "<html" not in changed.text
    anonymous = app.test_client().get(f"{path}?v=0", headers=HTMX)
    assert anonymous.status_code == 401 and "HX-Redirect" in anonymous.headers


def test_environment_history_pages_by_25_newest_first_and_filters_by_state(app, web, new_environment):
    new_environment(PLAIN)
    ids = add_finished_releases(app, ["SUCCEEDED", "FAILED", "CANCELLED"] * 10)
    client = web("member")
    first_page = client.get(PAGE)
    shown = release_links(first_page.text)
    assert shown == sorted(ids, reverse=True)[:25]
    older = re.search(r'href="([^"]*before=\d+[^"]*)"[^>]*>Older releases', first_page.text).group(1)
    second_page = client.get(older.replace("&amp;", "&"))
    assert release_links(second_page.text) == sorted(ids, reverse=True)[25:]
    assert "Older releases" not in second_page.text and "Newest releases" in second_page.text
    failed = client.get(f"{PAGE}?state=FAILED")
    assert release_links(failed.text) == sorted(ids[1::3], reverse=True)
    assert "Older releases" not in failed.text and '<option value="FAILED" selected>' in failed.text
    unknown = client.get(f"{PAGE}?state=EXPLODED")
    assert unknown.status_code == 400 and "There is no state" in unknown.text
    assert client.get(f"{PAGE}?before={2**70}").status_code == 400
