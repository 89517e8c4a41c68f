"""Live polls answered before Flask (webapp/polls.py): a 204 of a few header lines for a signed-in,
active viewer whose version is current, and anything else left to the views."""
from __future__ import annotations

import sqlalchemy as sa
from redis import Redis

from tests.helpers import trigger
from tests.web.test_pages_dashboard import HTMX, PLAIN, version_in
from webapp.extensions import db
from webapp.live import RENDERED_PREFIX, SHARED_RENDER
from webapp.models import User

DASHBOARD = "/fragments/dashboard"


def current(client) -> str:
    return version_in(client.get("/").text, DASHBOARD)


def header_bytes(response) -> int:
    """Bytes of the status line and headers as sent on the wire (a 204 has no body)."""
    lines = [f"HTTP/1.1 {response.status}", *(f"{name}: {value}" for name, value in response.headers.items())]
    return len("\r\n".join(lines).encode()) + 4


def test_an_unchanged_poll_is_a_204_of_a_few_header_lines(app, web, new_environment):
    new_environment(PLAIN)
    client = web("member")
    response = client.get(f"{DASHBOARD}?v={current(client)}", headers=HTMX)
    assert response.status_code == 204 and response.data == b""
    assert dict(response.headers) == {"Cache-Control": "no-store", "Vary": "Cookie, HX-Request"}
    assert header_bytes(response) <= 256


def test_a_poll_without_a_session_or_with_a_forged_one_goes_to_sign_in(app, web, new_environment):
    new_environment(PLAIN)
    version = current(web("member"))
    anonymous = app.test_client()
    assert anonymous.get(f"{DASHBOARD}?v={version}", headers=HTMX).status_code == 401
    forged = app.test_client()
    forged.set_cookie("session", "eyJfdXNlcl9pZCI6IjEifQ.forged.signature")
    response = forged.get(f"{DASHBOARD}?v={version}", headers=HTMX)
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/sign-in")


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


def test_a_stale_poll_gets_the_fragment_and_one_render_serves_every_viewer(app, api, web, new_environment):
    new_environment(PLAIN, approval_workflow=False, wait_for_external_finish=True)
    dev, member = web("dev"), web("member")
    stale = current(dev)
    release_id = trigger(api)
    first = dev.get(f"{DASHBOARD}?v={stale}", headers=HTMX)
    assert first.status_code == 200 and f'href="/releases/{release_id}"' in first.text
    assert first.headers["Content-Security-Policy"].startswith("default-src 'self'")
    kept = Redis.from_url(app.config["REDIS_URL"]).get(RENDERED_PREFIX + SHARED_RENDER).decode()
    assert kept.partition("\n")[2] == first.text
    second = member.get(f"{DASHBOARD}?v={stale}", headers=HTMX)
    assert second.text == first.text
    assert second.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]


def test_polls_still_work_when_redis_is_gone(app, web, new_environment):
    new_environment(PLAIN)
    client = web("member")
    version = current(client)
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    app.extensions.pop("releasegate_redis", None)
    for middleware in (app.wsgi_app, getattr(app.wsgi_app, "app", None)):
        if hasattr(middleware, "redis"):
            middleware.redis = None
    response = client.get(f"{DASHBOARD}?v={version}", headers=HTMX)
    assert response.status_code == 200 and response.text.lstrip().startswith('<div id="dashboard"')


def test_a_poll_carrying_a_bearer_token_is_judged_by_the_token_not_the_session(app, web, new_environment):
    new_environment(PLAIN)
    client = web("member")
    version = current(client)
    response = client.get(f"{DASHBOARD}?v={version}", headers={**HTMX, "Authorization": "Bearer not-a-token"})
    assert response.status_code == 401 and "API token is invalid" in response.text
