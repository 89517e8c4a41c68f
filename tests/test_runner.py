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


def test_nothing_is_claimed_while_git_works_so_a_slow_fetch_is_never_taken_for_a_lost_worker(
        app, api, new_environment, run_jobs, monkeypatch):
    from datetime import timedelta

    from tests.helpers import state
    from webapp import repos
    from webapp.models import utcnow
    from webapp.reconcile import reconcile

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    seen = []
    find_hooks = repos.find_hooks

    def slow_find_hooks(*args, **kwargs):
        started = db.session.scalar(sa.select(Release.hook_started_at).where(Release.id == release_id))
        report = reconcile(utcnow() + timedelta(hours=1))  # long past WORKER_LOST_SECONDS
        seen.append((started, report["worker_lost"]))
        return find_hooks(*args, **kwargs)

    monkeypatch.setattr(repos, "find_hooks", slow_find_hooks)
    run_jobs()
    assert seen == [(None, [])]
    assert state(api, release_id) == "PENDING_APPROVAL"


def test_a_second_job_for_a_claimed_run_does_nothing(app, api, new_environment, run_jobs, tmp_path):
    from tests.helpers import state
    from worker.queues import enqueue_release_job

    runs = tmp_path / "runs"
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": f"echo run >> {runs}\nexit 2\n"})
    release_id = trigger(api)
    run_jobs()
    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == release_id).values(state="READY"))
        db.session.commit()
        assert enqueue_release_job("hook", release_id)  # a duplicate: READY, but its run was claimed
    run_jobs()
    assert runs.read_text() == "run\n" and state(api, release_id) == "READY"


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


def test_finished_workspaces_are_removed_while_a_command_runs_or_after_a_while(tmp_path, monkeypatch):
    from tests.helpers import wait_for

    with runner._command():  # what earlier tests left goes first
        wait_for(runner._trash.empty, timeout=3)
        time.sleep(0.1)
    monkeypatch.setattr(runner, "TRASH_WAIT", 1.0)
    idle, busy = tmp_path / "idle", tmp_path / "busy"
    idle.mkdir()
    runner._discard(idle)
    time.sleep(0.3)
    assert idle.exists()  # the next run's preparation is not slowed down by the removal…
    wait_for(lambda: not idle.exists(), timeout=3)  # …but it does not wait forever
    with runner._command():
        busy.mkdir()
        runner._discard(busy)
        wait_for(lambda: not busy.exists(), timeout=0.5)  # while a command runs, at once


def test_a_backlog_of_finished_workspaces_waits_once_not_once_per_workspace(tmp_path, monkeypatch):
    from tests.helpers import wait_for

    with runner._command():
        wait_for(runner._trash.empty, timeout=3)
        time.sleep(0.1)
    monkeypatch.setattr(runner, "TRASH_WAIT", 1.0)
    backlog = [tmp_path / f"w{n}" for n in range(4)]
    for workspace in backlog:
        workspace.mkdir()
        runner._discard(workspace)
    # Each waited TRASH_WAIT from when it was discarded, so all four are gone after about
    # one TRASH_WAIT, not four.
    wait_for(lambda: not any(workspace.exists() for workspace in backlog), timeout=2.5)


def test_the_run_context_says_whether_a_release_waits_behind_never_counting_its_own(
        app, api, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    first = trigger(api)  # READY: it holds the slot (no worker runs here)
    with app.app_context():
        assert runner.RunContext.read(first, "hook").queued_behind is False
    second = trigger(api)
    with app.app_context():
        assert runner.RunContext.read(first, "hook").queued_behind is True
        assert runner.RunContext.read(second, "hook", state="QUEUED").queued_behind is False  # only itself


def test_a_state_change_naming_a_column_releases_lack_is_refused_not_dropped(app, api, new_environment):
    import pytest

    from webapp import releases

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    with app.app_context(), pytest.raises(TypeError, match="hook_exitcode"):
        releases._set_state(release_id, "FAILED", expect=("READY",), hook_exitcode=3)
