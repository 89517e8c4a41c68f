"""What the tests of change windows, freezes and emergency releases share: shop's qa and prod
and their API addresses, the clock (now), a window closed now and a freeze, an environment's
id, a release's moves, patching settings, a release started outside its window, and prod
allowing emergency releases with `oncall` may trigger them there (the `emergencies` fixture,
and emergency() to trigger one).
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger
from webapp import releases
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, User
from webapp.windows import DAYS

QA, PROD = "shop/qa", "shop/prod"
API_QA, API_PROD = "/api/v1/projects/shop/environments/qa", "/api/v1/projects/shop/environments/prod"
REASON = "checkout returns 500 for every customer"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def closed_now() -> tuple[list[dict], datetime]:
    """A window on the day after tomorrow (UTC), so none is open now; and the moment it opens."""
    day = (now() + timedelta(days=2)).date()
    windows = [{"days": [DAYS[day.weekday()]], "start": "00:00", "end": "23:59", "tz": "UTC"}]
    return windows, datetime.combine(day, datetime.min.time())


def freeze(reason: str = "year-end freeze", hours: float = 24) -> list[dict]:
    moment = now()
    return [{"from": f"{moment - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
             "to": f"{moment + timedelta(hours=hours):%Y-%m-%dT%H:%M:%SZ}", "reason": reason}]


def environment_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Environment.id).where(Environment.name == name))


def moves(app, release_id: int) -> list[tuple[str, str]]:
    with app.app_context():
        return [(event.to_state, event.reason) for event in db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.release_id == release_id, AuditEvent.to_state.is_not(None))
            .order_by(AuditEvent.id))]


def user_id(name: str) -> int:
    return db.session.scalar(sa.select(User.id).where(User.username == name))


def patch(api, url: str, **settings) -> dict:
    response = api("admin").patch(url, json=settings)
    assert response.status_code == 200, response.json
    return response.json


@pytest.fixture()
def emergencies(app, api, people, shop):
    """prod allows emergency releases; `oncall` may trigger them there (and approve elsewhere not)."""
    patch(api, API_PROD, allow_break_glass=True)
    with app.app_context():
        prod = db.session.get(Environment, environment_id(app, "prod"))
        people.add("oncall", "trigger_release", "break_glass", environment=prod)
    return people


def started_outside_its_window(app, api, run_jobs) -> tuple[int, datetime]:
    """A release of qa made IN_PROGRESS by a clock at its window's opening, while by the database's
    clock the window is closed; returns it and the opening."""
    windows, opening = closed_now()
    patch(api, API_QA, change_windows=windows)
    release_id = trigger(api, "dev", path=QA)
    run_jobs()
    with app.app_context():
        releases.dispatch(environment_id(app, "qa"), now=opening)
    assert state(api, release_id) == "IN_PROGRESS"
    return release_id, opening


def emergency(api, who: str = "oncall", path: str = PROD, reason: str = REASON):
    project, environment = path.split("/")
    return api(who).post(f"/api/v1/projects/{project}/environments/{environment}/releases",
                         json={"resources": [], "break_glass": {"reason": reason}})
