"""What the worker reports: a run claimed, its heartbeat, the hook's outcome under the hook
contract, the release command's outcome; and the ends of a running release (abort, finish)."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .. import approval_rules
from ..extensions import db
from ..models import Environment, Release, utcnow
from ..permissions import require
from ..transactions import (
    WORKER,
    Actor,
    begin_or_join_write,
    commit_changes,
    lock_environment,
)
from .queue import dispatch_queue, start, window_verdict
from .states import WrongState, enqueue, get_release, move, wrong_state

# -- what the worker reports ----------------------------------------------------------------

def claim_run(release_id: int, stage: str, **pinned: Any) -> bool:
    """Mark a hook ("hook") or apply ("execute") as started, once, and record in the same
    compare-and-set what it runs (`pinned`: commit, hook ref commit and path, or command).
    False: nothing to do (another job claimed it, or the release moved on, or an apply found its
    change window closed: _window_closed)."""
    begin_or_join_write()  # a write on a stale read snapshot fails at once on SQLite ("database is locked")
    if stage == "execute" and _window_closed(release_id):
        return False
    now = utcnow()
    state, started = ("READY", Release.hook_started_at) if stage == "hook" else ("IN_PROGRESS", Release.exec_started_at)
    result = db.session.execute(
        sa.update(Release).where(Release.id == release_id, Release.state == state, started.is_(None))
        .values({started: now, Release.heartbeat_at: now, **pinned}).execution_options(synchronize_session=False))
    commit_changes()
    return result.rowcount == 1


def _window_closed(release_id: int) -> bool:
    """Within claim_run, before an apply starts: its window is judged again by the database's
    clock (it may have closed, or a freeze begun, since the release became IN_PROGRESS, while
    its job waited in the queue), and a release that may not start now goes back to SCHEDULED."""
    release = get_release(release_id)
    if release.state != "IN_PROGRESS" or release.exec_started_at is not None or release.break_glass_reason:
        return False
    lock_environment(release.environment_id)
    verdict = window_verdict(release.environment_id, None)
    if verdict.open:
        return False
    moved = move(release, "SCHEDULED", WORKER, "window closed", expect=("IN_PROGRESS",),
                  reason=f"the change window closed before it started applying; {verdict.reason}",
                  where=(Release.exec_started_at.is_(None),), scheduled_reason=verdict.reason,
                  scheduled_until=verdict.until)
    commit_changes()
    return moved


def heartbeat(release_id: int, state: str, **output: Any) -> bool:
    """Record liveness and output so far; False when the release left `state` (e.g. aborted)."""
    begin_or_join_write()  # a write on a stale read snapshot fails at once on SQLite ("database is locked")
    result = db.session.execute(
        sa.update(Release).where(Release.id == release_id, Release.state == state)
        .values(heartbeat_at=utcnow(), **output).execution_options(synchronize_session=False))
    commit_changes()
    return result.rowcount == 1


def fail(release_id: int, error: str, actor: Actor = WORKER, *, expect: tuple[str, ...],
         state: str = "FAILED", where: tuple = (), **values: Any) -> bool:
    """End a release that cannot go on (FAILED, or `state`), freeing its slot."""
    begin_or_join_write()
    release = get_release(release_id)
    if not move(release, state, actor, "fail", expect=expect, error=error, reason=error, where=where, **values):
        return False
    dispatch_queue(release.environment_id)
    commit_changes()
    return True


def record_hook_result(release_id: int, *, exit_code: int | None, output: str, truncated: bool,
                       error: str | None = None, needs_approval_reason: str | None = None,
                       verdict: bytes | None = None) -> str | None:
    """Apply the hook contract: 0 proceeds, 2 waits for approval, anything else fails.
    `needs_approval_reason` (the hook differs from the hook ref) turns a 0 into a wait: fail
    closed; it ends the stored output only when the release does wait. `verdict` (what the hook
    wrote to $RELEASE_VERDICT) adds approval rules to a wait, and is ignored after an exit 0.
    A wait whose rules nobody could meet fails instead. Returns the new state, or None when the
    release had moved on."""
    begin_or_join_write()
    release = get_release(release_id)
    hook = {"hook_exit_code": exit_code, "hook_output": output, "hook_truncated": truncated}
    passed = error is None and exit_code in (0, 2)
    if passed and (exit_code == 2 or needs_approval_reason):
        new_state, reason = "PENDING_APPROVAL", needs_approval_reason or "pre-release hook exited 2"
        try:
            rules, hook["approval_reason"] = _rules_for(release, verdict if exit_code == 2 else None)
            problem = _authors_unknown(release) or approval_rules.infeasible(release, rules)
        except approval_rules.RuleError as rule_error:
            problem = str(rule_error)
        if problem:
            new_state, reason, hook["error"] = "FAILED", problem, problem
        else:
            hook.update(approval_rules=rules, pending_since=utcnow())
            if needs_approval_reason:  # said only of a release that waits, never of one that failed
                hook["hook_output"] = f"{output}\n[releasegate] {needs_approval_reason}\n"
    elif passed:
        new_state = None  # on to apply, now or once a change window opens
    else:
        error = error or f"The pre-release hook exited {exit_code}."
        new_state, reason = "FAILED", error
        hook["error"] = error
    if new_state is None:
        lock_environment(release.environment_id)  # windows are judged on what the lock lets settle
        new_state = start(release, window_verdict(release.environment_id, None), "hook result",
                           expect=("READY",), reason="pre-release hook exited 0", **hook)
        moved = new_state is not None
    else:
        moved = move(release, new_state, WORKER, "hook result", expect=("READY",), reason=reason, **hook)
    if not moved:
        commit_changes()
        return None
    if new_state in ("FAILED", "PENDING_APPROVAL", "SCHEDULED"):
        dispatch_queue(release.environment_id)  # the slot is free, or a queued emergency release needs it
    elif new_state == "IN_PROGRESS" and not _nothing_to_run(release.environment):
        enqueue("execute", release_id)
    elif new_state == "IN_PROGRESS":  # nothing to execute: on to SUCCEEDED now, not through a second job
        _succeed_without_command(release)
        new_state = "SUCCEEDED"
    commit_changes()
    return new_state


def _authors_unknown(release: Release) -> str | None:
    """Fail closed: when the authors of a change may not approve it, a change whose commits could
    not be read cannot wait for approval, since nobody could be told apart from its authors."""
    since = release.since
    if not release.environment.authors_may_not_approve or (since is not None and not since.get("error")
                                                           and not since.get("commits_truncated")):
        return None
    if since is None:
        why = "They were not computed."
    elif since.get("error"):
        why = since["error"]
    else:
        why = f"There are more than the {len(since.get('commits') or [])} listed, so some authors are unknown."
    return (f"{release.environment.project.name}/{release.environment.name} does not let the authors of a change "
            f"approve it, but the commits of this release could not be read: {why} Fix that, or turn "
            "authors_may_not_approve off, then trigger the release again.")


def _rules_for(release: Release, verdict: bytes | None) -> tuple[list[dict], str | None]:
    """The rules a waiting release must meet, and the verdict's reason; RuleError for a bad verdict."""
    rules = approval_rules.check_rules(release.environment.approval_rules)
    if verdict is None:
        return rules, None
    parsed = approval_rules.parse_verdict(verdict)
    return approval_rules.merge(rules, parsed.rules), parsed.reason


def record_execution_result(release_id: int, *, exit_code: int | None, output: str, truncated: bool,
                            timed_out: bool = False, error: str | None = None) -> str | None:
    begin_or_join_write()
    release = get_release(release_id)
    if timed_out:
        state, error = "TIMED_OUT", error or "The release command timed out."
    elif error is None and exit_code == 0:
        state = "SUCCEEDED"
    else:
        state, error = "FAILED", error or f"The release command exited {exit_code}."
    moved = move(release, state, WORKER, "execution result", expect=("IN_PROGRESS",),
                  reason=error or "release command exited 0", error=error, exec_exit_code=exit_code,
                  exec_output=output, exec_truncated=truncated)
    if moved:
        dispatch_queue(release.environment_id)
    commit_changes()
    return state if moved else None


def succeed_without_command(release_id: int) -> bool:
    begin_or_join_write()
    moved = _succeed_without_command(get_release(release_id))
    commit_changes()
    return moved


NOTHING_RUN = "No release command is set for this environment, so nothing was run."


def _nothing_to_run(environment: Environment) -> bool:
    return not (environment.release_command or "").strip() and not environment.wait_for_external_finish


def _succeed_without_command(release: Release) -> bool:
    """Within the current transaction: IN_PROGRESS → SUCCEEDED, nothing run; frees the slot."""
    moved = move(release, "SUCCEEDED", WORKER, "nothing to run", expect=("IN_PROGRESS",), reason=NOTHING_RUN,
                  exec_output=NOTHING_RUN + "\n")
    if moved:
        dispatch_queue(release.environment_id)
    return moved


def abort(release_id: int, actor: Actor) -> Release:
    """Stop a READY, SCHEDULED or IN_PROGRESS release; its worker sees the change and kills its
    processes."""
    begin_or_join_write()
    release = get_release(release_id)
    require(actor.user, "cancel_release", release.environment)
    message = f"aborted by {actor.name}"
    if not move(release, "FAILED", actor, "abort", expect=("READY", "SCHEDULED", "IN_PROGRESS"), reason=message,
                 error=message):
        db.session.rollback()
        raise wrong_state(release, "aborted", "ready, scheduled or in progress")
    dispatch_queue(release.environment_id)
    commit_changes()
    return release


def finish(release_id: int, actor: Actor, result: str, log: str) -> Release:
    """An external deployer reports the outcome of a release that waits for it."""
    begin_or_join_write()
    release = get_release(release_id)
    require(actor.user, "trigger_release", release.environment)
    environment = release.environment
    if not environment.wait_for_external_finish or environment.release_command:
        raise WrongState(f"{environment.project.name}/{environment.name} does not wait for an external "
                         "finish, so its releases cannot be finished through the API.")
    error = None if result == "SUCCEEDED" else f"reported failed by {actor.name}"
    if not move(release, result, actor, "finish", expect=("IN_PROGRESS",), reason=f"finish reported by {actor.name}",
                 error=error, exec_output=log):
        db.session.rollback()
        raise wrong_state(release, "finished", "in progress")
    dispatch_queue(release.environment_id)
    commit_changes()
    return release


def await_external_finish(release_id: int) -> None:
    """No release command, and the environment waits for `/finish`: stop heartbeating, keep the slot."""
    db.session.execute(
        sa.update(Release).where(Release.id == release_id, Release.state == "IN_PROGRESS")
        .values(heartbeat_at=None, exec_output="Waiting for an external finish (POST /api/v1/releases/"
                f"{release_id}/finish).\n").execution_options(synchronize_session=False))
    commit_changes()
