"""What the tests of the run path's sentences share (issue 17, helper runpath): a release's
moves as the audit log keeps them, a release's row as the database holds it, and a release
that dispatch has put IN_PROGRESS without its apply having run (its job waits in Redis)."""
from __future__ import annotations

import sqlalchemy as sa

from tests.helpers import trigger
from webapp.extensions import db
from webapp.models import AuditEvent, Release

HOOK_DIR = "svc/pre_release_hooks"
PLAIN = {"README.md": "no hook: the approval workflow is off\n"}


def moves(app, release_id: int) -> list[tuple[str, str]]:
    """(to state, reason) of each move of the release, in order."""
    with app.app_context():
        return [(event.to_state, event.reason) for event in db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.release_id == release_id, AuditEvent.to_state.is_not(None))
            .order_by(AuditEvent.id))]


def row(app, release_id: int, *columns: str) -> tuple:
    """Columns of the release's row as committed."""
    with app.app_context():
        found = db.session.get(Release, release_id)
        values = tuple(getattr(found, column) for column in columns)
        db.session.rollback()
        return values


def in_progress(api, new_environment, name: str = "env", **settings) -> int:
    """A release of a new svc/`name` (approval workflow off) that dispatch moved to IN_PROGRESS;
    its apply job is queued, not run."""
    new_environment(PLAIN, name=name, approval_workflow=False, **settings)
    release_id = trigger(api, path=f"svc/{name}")
    assert api("member").get(f"/api/v1/releases/{release_id}").json["state"] == "IN_PROGRESS"
    return release_id
