"""What the tests of the release page and the pages built on it share: hooks that wait or let
the release go, resources with mixed changes, htmx's headers, a release left waiting for
approval (pending), an htmx or plain form post (post), the number of releases, and the
#release-panel part of a page (panel_of).
"""
from __future__ import annotations

import sqlalchemy as sa

from tests.helpers import state, trigger
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
