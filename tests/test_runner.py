"""Runner housekeeping: heartbeats during slow git work, and leftovers of killed workers."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import sqlalchemy as sa

from tests.helpers import trigger
from webapp import runner
from webapp.extensions import db
from webapp.models import Release


def test_keepalive_heartbeats_while_slow_work_runs(app, api, new_environment):
    new_environment({"README": "x\n"}, approval_workflow=False, wait_for_external_finish=True)
    release_id = trigger(api)
    with app.app_context():
        db.session.execute(sa.update(Release).values(heartbeat_at=None))
        db.session.commit()
        with runner.keepalive(release_id, "IN_PROGRESS", 0.1):
            time.sleep(0.5)  # a slow fetch
        beats = db.session.scalar(sa.select(Release.heartbeat_at).where(Release.id == release_id))
    assert beats is not None


def test_sweep_removes_workspaces_of_dead_workers_only(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "WORK_ROOT", tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{dead.pid}-7-abc"
    mine = tmp_path / f"{os.getpid()}-8-def"
    stale.mkdir()
    mine.mkdir()
    assert runner.sweep_workspaces() == [stale]
    assert not stale.exists() and mine.exists()


def test_a_release_whose_job_redis_lost_is_queued_again_by_the_reconciler(app, api, new_environment, run_jobs):
    from datetime import timedelta

    from tests.helpers import state
    from webapp.extensions import redis_connection
    from webapp.models import utcnow
    from webapp.reconcile import reconcile

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    with app.app_context():
        redis_connection().flushdb()  # Redis restarted without its data between trigger and dispatch
    run_jobs()
    assert state(api, release_id) == "READY"
    with app.app_context():
        assert reconcile(utcnow() + timedelta(seconds=1))["requeued"] == []  # still within the grace period
        assert reconcile(utcnow() + timedelta(seconds=30))["requeued"] == [release_id]
        assert reconcile(utcnow() + timedelta(seconds=30))["requeued"] == []  # its job is queued now
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
