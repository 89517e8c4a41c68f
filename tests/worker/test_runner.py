"""Runner housekeeping: heartbeats during slow git work, and leftovers of killed workers."""
from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

from tests.helpers import trigger
from webapp.extensions import db
from webapp.models import Release
from webapp.running import workspace


def test_nothing_is_claimed_while_git_works_so_a_slow_fetch_is_never_taken_for_a_lost_worker(
        app, api, new_environment, run_jobs, monkeypatch):
    from datetime import timedelta

    from tests.helpers import state
    from webapp.models import utcnow
    from webapp.reconcile import reconcile
    from webapp.running import hook

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    seen = []
    place_trusted_hook = hook.place_trusted_hook

    def slow_place_trusted_hook(*args, **kwargs):
        started = db.session.scalar(sa.select(Release.hook_started_at).where(Release.id == release_id))
        report = reconcile(utcnow() + timedelta(hours=1))  # long past WORKER_LOST_SECONDS
        seen.append((started, report["worker_lost"]))
        return place_trusted_hook(*args, **kwargs)

    monkeypatch.setattr(hook, "place_trusted_hook", slow_place_trusted_hook)
    run_jobs()
    assert seen == [(None, [])]
    assert state(api, release_id) == "PENDING_APPROVAL"


def test_a_second_job_for_a_claimed_run_does_nothing(app, api, new_environment, run_jobs):
    from tests.helpers import release
    from worker.queues import enqueue_release_job

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "echo ran at $(date +%s%N)\nexit 2\n"})
    release_id = trigger(api)
    run_jobs()
    first = release(api, release_id)["hook"]["output"]
    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == release_id).values(state="READY"))
        db.session.commit()
        assert enqueue_release_job("hook", release_id)  # a duplicate: READY, but its run was claimed
    run_jobs()
    again = release(api, release_id)
    assert again["hook"]["output"] == first and again["state"] == "READY"


def test_sweep_removes_workspaces_of_dead_workers_only(tmp_path, monkeypatch):
    monkeypatch.setattr(workspace, "WORK_ROOT", tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{dead.pid}-7-abc"
    mine = tmp_path / f"{os.getpid()}-8-def"
    stale.mkdir()
    mine.mkdir()
    assert workspace.sweep_workspaces() == [stale]
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


def test_a_trigger_queues_its_hook_before_its_announcement(app, api, new_environment):
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from webapp.extensions import redis_connection
    from worker.queues import notify_queue

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    with app.app_context():
        hook = Job.fetch(f"hook-{release_id}", connection=redis_connection(), serializer=JSONSerializer)
        announcements = notify_queue().get_jobs()
    assert announcements  # QUEUED is announced…
    assert all(hook.enqueued_at <= job.enqueued_at for job in announcements)  # …after the hook is queued


def test_a_state_change_naming_a_column_releases_lack_is_refused_not_dropped(app, api, new_environment):
    import pytest

    from webapp import releases

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    with app.app_context(), pytest.raises(sa.exc.CompileError, match="hook_exitcode"):
        releases.fail(release_id, "a misspelt column", expect=("READY",), hook_exitcode=3)
