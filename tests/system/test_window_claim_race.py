"""An apply whose change window closed is sent back to SCHEDULED only while nobody has started
it (PostgreSQL: on SQLite the claim's write transaction keeps every other writer out). The
release is read before the environment's lock is taken; another worker's claim that commits in
between must win, or an apply already running would be shown as waiting for its window."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import state
from tests.worker.windows_and_break_glass_support import moves, started_outside_its_window
from webapp.extensions import db
from webapp.models import Release
from webapp.releases import runs


@pytest.mark.postgresql
def test_an_apply_another_worker_started_meanwhile_is_not_sent_back_when_its_window_closed(
        app, api, shop, run_jobs, monkeypatch):
    release_id, _ = started_outside_its_window(app, api, run_jobs)

    lock_environment = runs.lock_environment

    def another_worker_claims_it_first(environment: int):
        with db.engine.begin() as other:  # its own connection, committed before this claim locks
            other.execute(sa.update(Release).where(Release.id == release_id).values(exec_started_at=sa.func.now()))
        return lock_environment(environment)

    monkeypatch.setattr(runs, "lock_environment", another_worker_claims_it_first)
    with app.app_context():
        assert runs.claim_run(release_id, "execute") is False
        started = db.session.scalar(sa.select(Release.exec_started_at).where(Release.id == release_id))
    assert state(api, release_id) == "IN_PROGRESS" and started is not None
    assert moves(app, release_id)[-1][0] == "IN_PROGRESS"
