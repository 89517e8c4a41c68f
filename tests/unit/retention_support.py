"""What the retention and index tests share: a clock (NOW, OLD past the default retention,
RECENT within it), the note that replaces pruned output, a project with one environment and a
user (the `world` fixture), finished releases and mail added to it, a release's outputs, and the
SQL statements a block of code runs (recorded_statements).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa

from webapp import retention
from webapp.extensions import db
from webapp.models import Environment, OutgoingMail, Project, Release, User, WebhookEndpoint, utcnow

NOW = utcnow()
OLD = NOW - timedelta(days=100)  # past the default 90 days of output and 30 days of logs
RECENT = NOW - timedelta(days=10)  # within 30 days
NOTE_90 = retention.NOTE.format(days=90)


@pytest.fixture()
def world(app):
    """One user, project, environment and webhook endpoint, written straight to the tables."""
    with app.app_context():
        user = User(username="alice", email="alice@example.com", password_hash="x")
        project = Project(name="shop", repo="/nonexistent")
        db.session.add_all([user, project])
        db.session.flush()
        environment = Environment(project_id=project.id, name="prod", release_stream="PROD")
        endpoint = WebhookEndpoint(name="ci", url="http://127.0.0.1:9/hook", secret="s", events=["*"])
        db.session.add_all([environment, endpoint])
        db.session.commit()
        return {"user": user.id, "project": project.id, "environment": environment.id, "endpoint": endpoint.id}


def add_release(world, *, state="SUCCEEDED", finished_at=OLD, hook_output="hook says go\n",
                exec_output="applied 3 changes\n", environment_id=None, **values) -> int:
    release = Release(project_id=world["project"], environment_id=environment_id or world["environment"],
                      state=state, finished_at=finished_at, hook_output=hook_output, exec_output=exec_output,
                      resources=[], triggered_by_id=world["user"], created_at=OLD - timedelta(hours=1), **values)
    db.session.add(release)
    db.session.commit()
    return release.id


def outputs(release_id: int) -> tuple[str, str]:
    db.session.expire_all()
    release = db.session.get(Release, release_id)
    return release.hook_output, release.exec_output


def add_mail(world, *, status: str, created_at, release_id=None) -> int:
    mail = OutgoingMail(kind="release_outcome", user_id=world["user"], to_address="alice@example.com",
                        release_id=release_id, status=status, created_at=created_at)
    db.session.add(mail)
    db.session.commit()
    return mail.id


@contextmanager
def recorded_statements() -> Iterator[list[tuple[str, object]]]:
    """The SQL statements (with their parameters) run inside the block."""
    statements: list[tuple[str, object]] = []

    def record(_connection, _cursor, statement, parameters, _context, _executemany):
        statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
