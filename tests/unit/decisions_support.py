"""What the tests of releases.decisions share: a release waiting for approval on svc/env
(`waiting`), an emergency release on shop/prod that finished (`finished_emergency`), the persona
as a User row (`user`), calling a decision as someone (`as_`), and the audit events of a release
(`events`).

The decisions are called as functions, the door every other one (API, pages, mail, Slack) goes
through: the views check permissions first, so only a direct call shows the function's own checks.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, Release, User
from webapp.transactions import Actor

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "echo asking; exit 2\n"}
EMERGENCY_REASON = "checkout returns 500 for every customer"


def user(name: str) -> User:
    return db.session.scalar(sa.select(User).where(User.username == name))


def as_(name: str, via: str = "api") -> Actor:
    return Actor(user(name), via)


def events(release_id: int, action: str | None = None) -> list[AuditEvent]:
    query = sa.select(AuditEvent).where(AuditEvent.release_id == release_id).order_by(AuditEvent.id)
    return list(db.session.scalars(query if action is None else query.where(AuditEvent.action == action)))


def environment(name: str = "env") -> Environment:
    return db.session.scalar(sa.select(Environment).where(Environment.name == name))


@pytest.fixture()
def waiting(api, new_environment, run_jobs):
    """A release dev triggered on svc/env, pending approval (approver and admin may decide it)."""
    new_environment(WAITS)
    release_id = trigger(api, "dev")
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    return release_id


@pytest.fixture()
def finished_emergency(app, api, people, shop, run_jobs):
    """An emergency release oncall triggered on shop/prod (which allows them), run to SUCCEEDED."""
    assert api("admin").patch("/api/v1/projects/shop/environments/prod",
                              json={"allow_break_glass": True}).status_code == 200
    with app.app_context():
        people.add("oncall", "trigger_release", "break_glass", environment=environment("prod"))
    response = api("oncall").post("/api/v1/projects/shop/environments/prod/releases",
                                  json={"resources": [], "break_glass": {"reason": EMERGENCY_REASON}})
    assert response.status_code == 202, response.json
    run_jobs()
    assert state(api, response.json["id"]) == "SUCCEEDED"
    return response.json["id"]


def row(release_id: int) -> Release:
    db.session.expire_all()
    return db.session.get(Release, release_id)
