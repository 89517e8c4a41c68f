"""Live polls (views/web.py live_fragment): every live fragment answers a signed-in viewer whose
version is current with a 204 of a few header lines, draws itself again for each viewer once
something changed, and keeps the access rules of every other page."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from redis import Redis

from tests.helpers import state, trigger
from tests.web.pages_support import HTMX, PLAIN, WAITS, version_in
from webapp.extensions import db
from webapp.live import VERSION_KEY
from webapp.models import User

DASHBOARD = "/fragments/dashboard"
PAGE_OF = {  # each live fragment, the page that draws it first, and the persona who sees it there
    "dashboard": ("/", "member"),
    "environment": ("/projects/svc/environments/env", "member"),
    "approvals": ("/approvals", "approver"),
    "release": ("/releases/{release_id}", "member"),
}


def current(client) -> str:
    return version_in(client.get("/").text, DASHBOARD)


def header_bytes(response) -> int:
    """Bytes of the status line and headers as sent on the wire (a 204 has no body)."""
    lines = [f"HTTP/1.1 {response.status}", *(f"{name}: {value}" for name, value in response.headers.items())]
    return len("\r\n".join(lines).encode()) + 4


def poll_url(page_text: str) -> str:
    """The URL the page's first live region polls (the navigation count asks on load, without one)."""
    found = re.search(r'hx-get="([^"]+\?v=[^"]+)" hx-trigger="rg-poll from:body"', page_text)
    return found.group(1).replace("&amp;", "&")


@pytest.fixture()
def live_release(api, new_environment, run_jobs) -> int:
    """A release waiting for approval: the release page and the inbox both poll."""
    new_environment(WAITS)
    release_id = trigger(api)
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    return release_id


@pytest.mark.parametrize("fragment", sorted(PAGE_OF))
def test_every_live_fragment_answers_an_unchanged_poll_with_a_204_of_a_few_header_lines(
        web, live_release, fragment):
    page, persona = PAGE_OF[fragment]
    client = web(persona)
    url = poll_url(client.get(page.format(release_id=live_release)).text)
    response = client.get(url, headers=HTMX)
    assert response.status_code == 204 and response.data == b""
    assert dict(response.headers) == {"Cache-Control": "no-store", "Vary": "Cookie, HX-Request"}
    assert header_bytes(response) <= 256


def test_the_navigation_count_answers_an_unchanged_poll_with_a_204_too(web, live_release):
    client = web("approver")
    drawn = client.get("/fragments/approvals-count", headers=HTMX)
    assert drawn.headers["Vary"] == "Cookie, HX-Request" and ">1</span>" in drawn.text
    response = client.get(poll_url(drawn.text), headers=HTMX)
    assert response.status_code == 204 and dict(response.headers) == {"Cache-Control": "no-store",
                                                                      "Vary": "Cookie, HX-Request"}


@pytest.mark.parametrize("fragment", sorted(PAGE_OF))
def test_every_live_fragment_sends_a_poll_without_a_session_or_with_a_forged_one_to_sign_in(
        app, web, live_release, fragment):
    page, persona = PAGE_OF[fragment]
    url = poll_url(web(persona).get(page.format(release_id=live_release)).text)  # its version is current
    anonymous = app.test_client()
    response = anonymous.get(url, headers=HTMX)
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/sign-in")
    forged = app.test_client()
    forged.set_cookie("session", "eyJfdXNlcl9pZCI6IjEifQ.forged.signature")
    response = forged.get(url, headers=HTMX)
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/sign-in")
    assert "<html" not in response.text


def test_a_session_cookie_taken_to_another_browser_is_not_answered(app, web, new_environment):
    new_environment(PLAIN)
    client = web("member")
    version = current(client)
    # The cookie is bound to the browser that signed in (flask-login's "strong" protection).
    response = client.get(f"{DASHBOARD}?v={version}", headers={**HTMX, "User-Agent": "another browser"})
    assert response.status_code == 401


def test_a_deactivated_user_stops_getting_answers_at_once(app, web, new_environment):
    new_environment(PLAIN)
    admin, dev = web("admin"), web("dev")
    version = current(dev)
    assert dev.get(f"{DASHBOARD}?v={version}", headers=HTMX).status_code == 204
    with app.app_context():
        dev_id = db.session.scalar(sa.select(User.id).where(User.username == "dev"))
    response = admin.post(f"/admin/users/{dev_id}/deactivate", data={"csrf_token": admin.csrf})
    assert response.status_code in (200, 302, 303)
    assert dev.get(f"{DASHBOARD}?v={version}", headers=HTMX).status_code == 401
    assert dev.get(f"{DASHBOARD}?v={current(admin)}", headers=HTMX).status_code == 401


def test_a_stale_poll_gets_the_fragment_drawn_for_each_viewer_and_nothing_rendered_is_kept(
        app, api, web, new_environment):
    new_environment(PLAIN, approval_workflow=False, wait_for_external_finish=True)
    admin, member = web("admin"), web("member")
    stale = current(member)
    release_id = trigger(api)
    first = member.get(f"{DASHBOARD}?v={stale}", headers=HTMX)
    assert first.status_code == 200 and f'href="/releases/{release_id}"' in first.text
    assert first.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert first.headers["Vary"] == "Cookie, HX-Request" and first.headers["Cache-Control"] == "no-store"
    redis = Redis.from_url(app.config["REDIS_URL"])
    kept = [key for key in redis.scan_iter() if redis.type(key) == b"string" and b'id="dashboard"' in redis.get(key)]
    assert kept == [] and redis.get(VERSION_KEY) is not None  # the counter is all Redis holds for pages

    api("admin").post("/api/v1/projects", json={"name": "bare", "repo": "/nowhere"})  # no environments
    stale = current(member)
    trigger(api)
    for_admin = admin.get(f"{DASHBOARD}?v={stale}", headers=HTMX)
    for_member = member.get(f"{DASHBOARD}?v={stale}", headers=HTMX)
    # The empty project says what each viewer may do: one viewer's render never reaches another.
    assert "Add one in <a" in for_admin.text and "Add one in <a" not in for_member.text
    assert "People who manage environments add them" in for_member.text
    assert for_member.headers["Content-Security-Policy"] == for_admin.headers["Content-Security-Policy"]


def test_polls_still_work_when_redis_is_gone(app, web, new_environment):
    new_environment(PLAIN)
    client = web("member")
    version = current(client)
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    app.extensions.pop("releasegate_redis", None)
    response = client.get(f"{DASHBOARD}?v={version}", headers=HTMX)
    assert response.status_code == 200 and response.text.lstrip().startswith('<div id="dashboard"')
    assert version_in(response.text, DASHBOARD) == "none"
    again = client.get(f"{DASHBOARD}?v=none", headers=HTMX)  # "none" is never current
    assert again.status_code == 200 and again.text == response.text


def test_a_poll_carrying_a_bearer_token_is_judged_by_the_token_not_the_session(app, web, new_environment):
    new_environment(PLAIN)
    client = web("member")
    version = current(client)
    response = client.get(f"{DASHBOARD}?v={version}", headers={**HTMX, "Authorization": "Bearer not-a-token"})
    assert response.status_code == 401 and "API token is invalid" in response.text
