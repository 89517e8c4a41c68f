"""What the tests of the dashboard, the environment page and its forms share: hooks that wait
or are absent, the environment's addresses, htmx's headers, and helpers that add finished
releases, read a fragment's version, the release links and a field's error off a page, fill the
settings form, and count the SQL statements a request runs and which of them touch releases.
"""
from __future__ import annotations

import re
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import event

from tests.helpers import state, trigger
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, Project, Release, utcnow

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}
PLAIN = {"README.md": "no hook here\n"}
MIXED_CHANGES = [
    {"resourceType": "service", "resourceName": "api", "resourcePath": "svc/api.json", "changeType": "CREATE"},
    {"resourceType": "table", "resourceName": "orders", "resourcePath": "db/orders.json", "changeType": "DELETE"},
]
PAGE = "/projects/svc/environments/env"
SETTINGS = f"{PAGE}/settings"
VARIABLES = f"{PAGE}/variables"
API_ENV = "/api/v1/projects/svc/environments/env"
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/"}
SECRET = "hunter2-correct-horse-battery"


# -- helpers ------------------------------------------------------------------------------------

def environment_id(app, project: str = "svc", name: str = "env") -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Environment.id).join(Project).where(
            Project.name == project, Environment.name == name))


def environment_row(app, project: str = "svc", name: str = "env") -> Environment:
    """The environment as a detached row, for granting a permission on it."""
    with app.app_context():
        return db.session.get(Environment, environment_id(app, project, name))


def add_finished_releases(app, states: list[str], project: str = "svc", name: str = "env") -> list[int]:
    """History rows written straight into the database (they need no hook run)."""
    env_id = environment_id(app, project, name)
    with app.app_context():
        project_id = db.session.get(Environment, env_id).project_id
        rows = [Release(project_id=project_id, environment_id=env_id, state=s, resources=[], finished_at=utcnow())
                for s in states]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def version_in(text: str, path: str) -> str:
    return re.search(rf'hx-get="{re.escape(path)}\?v=([^"&]+)"', text).group(1)


def release_links(text: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/releases/(\d+)"', text)]


def field_error(text: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', text)
    return found.group(1) if found else ""


def settings_form(**overrides) -> dict:
    """The settings form as a browser sends it for the default environment (unchecked boxes are
    absent). `confirm_weakening="1"` is what the "Save anyway" button adds."""
    form = {"release_stream": "QA", "mode": "approval", "hook_ref": "", "release_command": "",
            "hook_timeout_seconds": "300", "release_timeout_seconds": "3600", "approval_timeout_hours": ""}
    form.update(overrides)
    return {key: value for key, value in form.items() if value is not None}


@contextmanager
def statements(app):
    """Collect the SQL the app sends while the block runs (the listener outlives the app context)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    with app.app_context():
        engine = db.engine
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        with app.app_context():
            event.remove(engine, "before_cursor_execute", record)


@contextmanager
def loaded_releases():
    """Count Release rows the ORM builds from query results."""
    loaded: list[int] = []

    def on_load(target, _context):
        loaded.append(target.id)

    event.listen(Release, "load", on_load)
    try:
        yield loaded
    finally:
        event.remove(Release, "load", on_load)


def touches_releases(sql: str) -> bool:
    return re.search(r"\breleases\b", sql) is not None


def pending_with_queue(api, run_jobs) -> tuple[int, int, int]:
    """One release waiting for approval and two queued behind it, in that order."""
    first = trigger(api)
    run_jobs()
    assert state(api, first) == "PENDING_APPROVAL"
    return first, trigger(api), trigger(api)


def settings_events(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(AuditEvent.id)).where(
            AuditEvent.action == "settings", AuditEvent.release_id.is_(None)))
