"""webapp/ahead.py: the release queued behind a running hook is prepared while that hook runs,
used only if it still reads the same, and never changes anything itself."""
from __future__ import annotations

import dataclasses
import threading

import sqlalchemy as sa

from tests.helpers import git, release, state, trigger, wait_for
from webapp import ahead, runner
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, Release

HOOK = "svc/pre_release_hooks/pre_release_hook.sh"
SLOW_HOOK = 'sleep 0.5\necho "stream $RELEASE_STREAM"\nexit 0\n'


def record_preparations(monkeypatch, after=None) -> list[tuple[int, str]]:
    """(release id, thread name) of every prepare_hook call; `after(context)` runs after each."""
    calls = []
    prepare_hook = runner.prepare_hook

    def recorded(context):
        prepared = prepare_hook(context)
        calls.append((context.release_id, threading.current_thread().name))
        if after is not None:
            after(context)
        return prepared

    monkeypatch.setattr(runner, "prepare_hook", recorded)
    return calls


def test_the_release_queued_behind_a_running_hook_is_prepared_meanwhile_and_used(
        api, new_environment, run_jobs, monkeypatch):
    repo = new_environment({HOOK: SLOW_HOOK})
    commit = git(repo, "rev-parse", "HEAD")
    calls = record_preparations(monkeypatch)
    first, second = trigger(api, ref=commit), trigger(api, ref=commit)
    run_jobs()
    assert state(api, first) == state(api, second) == "SUCCEEDED"
    assert [(release_id, name.split("_")[0]) for release_id, name in calls] == [
        (first, "MainThread"), (second, "prepare-ahead")]  # the second job did not prepare again


def test_a_preparation_is_dropped_when_its_release_reads_differently_by_its_turn(
        app, api, new_environment, run_jobs, monkeypatch):
    repo = new_environment({HOOK: SLOW_HOOK})
    commit = git(repo, "rev-parse", "HEAD")

    def rename_the_stream_once_prepared_ahead(context):
        if threading.current_thread().name.startswith("prepare-ahead"):
            db.session.execute(sa.update(Environment).values(release_stream="RENAMED"))
            db.session.commit()

    calls = record_preparations(monkeypatch, after=rename_the_stream_once_prepared_ahead)
    first, second = trigger(api, ref=commit), trigger(api, ref=commit)
    run_jobs()
    assert [release_id for release_id, _ in calls] == [first, second, second]  # prepared again
    assert "stream RENAMED" in release(api, second)["hook"]["output"]


def test_preparing_ahead_changes_nothing_and_an_unused_preparation_is_discarded(
        app, api, new_environment, run_jobs, monkeypatch):
    repo = new_environment({HOOK: "sleep 0.5\nexit 2\n"})
    commit = git(repo, "rev-parse", "HEAD")
    roots = []
    prepare_hook = runner.prepare_hook

    def kept(context):
        prepared = prepare_hook(context)
        roots.append(prepared.root)
        return prepared

    monkeypatch.setattr(runner, "prepare_hook", kept)
    first, second = trigger(api, ref=commit), trigger(api, ref=commit)
    run_jobs()
    assert state(api, first) == "PENDING_APPROVAL"
    with app.app_context():
        queued = db.session.get(Release, second)
        assert (queued.state, queued.hook_started_at, queued.heartbeat_at) == ("QUEUED", None, None)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.release_id == second)) == 1  # only "triggered"
        context = runner.RunContext.read(second, "hook", state="QUEUED")
    assert len(roots) == 2 and roots[1].exists()  # prepared ahead, waiting for its turn…
    assert ahead.take(dataclasses.replace(context, release_id=second + 1)) is None  # …until another job comes
    wait_for(lambda: not roots[1].exists(), timeout=10)


def test_nothing_is_prepared_meanwhile_when_no_release_waited_behind(api, new_environment, run_jobs, monkeypatch):
    repo = new_environment({HOOK: SLOW_HOOK})
    commit = git(repo, "rev-parse", "HEAD")
    asked = []
    monkeypatch.setattr(ahead, "prepare_next", lambda context: asked.append(context.release_id))
    alone = trigger(api, ref=commit)
    run_jobs()
    assert state(api, alone) == "SUCCEEDED" and asked == []  # no side thread, no query
    first, second = trigger(api, ref=commit), trigger(api, ref=commit)
    run_jobs()
    assert state(api, second) == "SUCCEEDED"
    assert asked == [first]  # while the first ran, the second waited; behind the second, nothing
