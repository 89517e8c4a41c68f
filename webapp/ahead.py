"""The release queued behind a running hook, prepared while that hook runs.

A serial environment's next release only starts once the running hook has ended and its
result is recorded, but everything before its own run is claimed (runner.prepare_hook: git,
the workspace and its checkout, the pre-flight check) has no side effect outside that
workspace. So while the worker's main thread waits for a hook, a side thread prepares the
oldest queued release of the same environment. When that release's job comes, it takes the
preparation only if the release still reads the same (runner.RunContext compares equal) and
its hook ref still names the same commit; otherwise the preparation is discarded and the
job prepares afresh. Nothing is done ahead that needs the network: only pinned commits
already in the mirror.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from . import repos, runner
from .extensions import db
from .models import Environment, Release

log = logging.getLogger(__name__)
WAIT_SECONDS = 30.0  # how long a job waits for the preparation of its own release to finish

_executor: list[concurrent.futures.ThreadPoolExecutor] = []
_ahead: list[tuple[int, concurrent.futures.Future]] = []  # (environment id, preparation): one at a time
_lock = threading.Lock()


def prepare_next(context: runner.RunContext) -> None:
    """Start preparing the release queued behind `context`'s in its environment."""
    app = current_app._get_current_object()
    with _lock:
        _drop_locked()
        if not _executor:
            _executor.append(concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prepare-ahead"))
        _ahead.append((context.environment_id, _executor[0].submit(_prepare_next, app, context.environment_id)))


def take(context: runner.RunContext) -> runner.Prepared | None:
    """The preparation made ahead for `context`'s release, if it still holds; None otherwise."""
    with _lock:
        if not _ahead:
            return None
        environment_id, future = _ahead.pop()
    if environment_id != context.environment_id:  # another environment's: not worth waiting for
        future.add_done_callback(_discard_result)
        return None
    try:
        prepared = future.result(WAIT_SECONDS)
    except Exception:  # a failed or stuck preparation: the job prepares afresh
        future.add_done_callback(_discard_result)
        return None
    if prepared is None:
        return None
    if prepared.context != context or not _hook_ref_unchanged(prepared):
        prepared.discard()
        return None
    return prepared


def _hook_ref_unchanged(prepared: runner.Prepared) -> bool:
    context = prepared.context
    try:
        return repos.resolve_commit(prepared.git_dir, context.hook_ref or context.branch) == prepared.hook_ref_commit
    except repos.RepoError:
        return False


def _prepare_next(app, environment_id: int) -> runner.Prepared | None:
    with app.app_context():
        try:
            approval = db.session.scalar(sa.select(Environment.approval_workflow)
                                         .where(Environment.id == environment_id))
            release_id = db.session.scalar(sa.select(Release.id).where(
                Release.environment_id == environment_id, Release.state == "QUEUED").order_by(Release.id).limit(1))
            if not approval or release_id is None:
                return None
            context = runner.RunContext.read(release_id, "hook", state="QUEUED")
            if context is None or not _local(context):
                return None
            return runner.prepare_hook(context)
        except Exception as error:  # only ever an optimisation
            log.debug("could not prepare the next release of environment %s: %s", environment_id, error)
            return None
        finally:
            db.session.remove()


def _local(context: runner.RunContext) -> bool:
    """Whether the release's commit is pinned and already in the mirror (no fetch needed)."""
    if not context.commit or not repos.is_full_commit(context.commit):
        return False
    return repos.has_commit(repos.mirror_path(context.repo, Path(current_app.config["REPO_CACHE_DIR"])),
                            context.commit)


def _drop_locked() -> None:
    """Discard an older preparation nobody took (e.g. its release waits for approval)."""
    while _ahead:
        _environment_id, future = _ahead.pop()
        future.add_done_callback(_discard_result)


def _discard_result(future: concurrent.futures.Future) -> None:
    try:
        prepared = future.result()
    except Exception:
        return
    if prepared is not None:
        prepared.discard()
