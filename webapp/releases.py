"""The release state machine: every rule about how a release moves lives here.

Each public function is one transaction: compare-and-set on the release's state, an
audit event beside it, and jobs enqueued only after the commit. None needs a request,
so views, jobs, the CLI and tests all call the same code.
"""
from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from .extensions import db
from .models import SLOT_STATES, Decision, Environment, Grant, Release, User, utcnow
from .permissions import PermissionDenied, has_permission, require
from .transactions import SYSTEM, WORKER, Actor, after_commit, audit, commit_changes, transition

__all__ = ["SYSTEM", "WORKER", "Actor", "ReleaseError", "NotFound", "WrongState"]

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


class ReleaseError(Exception):
    """An action that cannot happen; the message is shown to the user as it is."""

    status = 409


class NotFound(ReleaseError):
    status = 404


class WrongState(ReleaseError):
    status = 409


def _enqueue(kind: str, release_id: int) -> None:
    from worker.queues import enqueue_release_job  # the one worker piece the webapp uses

    after_commit(enqueue_release_job, kind, release_id, first=True)


# -- helpers ------------------------------------------------------------------------------

def get_release(release_id: int) -> Release:
    release = db.session.get(Release, release_id)
    if release is None:
        raise NotFound(f"Release #{release_id} does not exist.")
    return release


# -- statements on the way of every release, built once -----------------------------------------
# Building a statement costs more than SQLite takes to run it. An UPDATE sets the columns named
# by the parameters it runs with; the bound values of the WHERE clause start with "_".
_RELEASES, _ENVIRONMENTS = Release.__table__, Environment.__table__
_RELEASE_COLUMNS = frozenset(_RELEASES.c.keys())
_SET_STATE = sa.update(_RELEASES).where(_RELEASES.c.id == sa.bindparam("_release_id"),
                                        _RELEASES.c.state.in_(sa.bindparam("_expect", expanding=True)))
_CLAIM = {stage: sa.update(_RELEASES).where(_RELEASES.c.id == sa.bindparam("_release_id"),
                                             _RELEASES.c.state == expect, started.is_(None))
          for stage, expect, started in (("hook", "READY", _RELEASES.c.hook_started_at),
                                         ("execute", "IN_PROGRESS", _RELEASES.c.exec_started_at))}
_HEARTBEAT = sa.update(_RELEASES).where(_RELEASES.c.id == sa.bindparam("_release_id"),
                                        _RELEASES.c.state == sa.bindparam("_state"))
# PostgreSQL: FOR NO KEY UPDATE (see dispatch_queue).
_LOCK_ENVIRONMENT = (sa.select(_ENVIRONMENTS.c.parallel_releases, _ENVIRONMENTS.c.approval_workflow)
                     .where(_ENVIRONMENTS.c.id == sa.bindparam("environment_id")).with_for_update(key_share=True))
_SLOT = sa.select(  # who holds the environment's slot, and who is next in its queue
    sa.select(_RELEASES.c.id).where(_RELEASES.c.environment_id == sa.bindparam("environment_id"),
                                    _RELEASES.c.holds_slot).limit(1).scalar_subquery().label("holder"),
    sa.select(_RELEASES.c.id).where(_RELEASES.c.environment_id == sa.bindparam("environment_id"),
                                    _RELEASES.c.state == "QUEUED")
    .order_by(_RELEASES.c.id).limit(1).scalar_subquery().label("next"))
_HOOK_RESULT_CONTEXT = (
    sa.select(_RELEASES.c.state, _RELEASES.c.environment_id, _ENVIRONMENTS.c.release_command,
              _ENVIRONMENTS.c.wait_for_external_finish)
    .select_from(_RELEASES.join(_ENVIRONMENTS, _RELEASES.c.environment_id == _ENVIRONMENTS.c.id))
    .where(_RELEASES.c.id == sa.bindparam("release_id")))


def _set_state(release_id: int, to_state: str, *, expect: tuple[str, ...], where: tuple = (),
               **values: Any) -> bool:
    """The compare-and-set itself, on the row alone: True when it changed the release.
    `values` are plain values of columns of releases (bound as parameters, not SQL).

    A Core UPDATE (the ORM's costs several times as much, and this runs on every move), so
    what the session holds unsaved is flushed first, as the ORM's autoflush did."""
    if not values.keys() <= _RELEASE_COLUMNS:  # a misspelt column would silently be left out
        raise TypeError(f"releases has no column {sorted(values.keys() - _RELEASE_COLUMNS)}")
    if to_state not in SLOT_STATES:
        values.setdefault("holds_slot", False)
        values.setdefault("finished_at", utcnow())
    if db.session.new or db.session.dirty or db.session.deleted:
        db.session.flush()
    statement = _SET_STATE.where(*where) if where else _SET_STATE
    result = db.session.execute(statement, {"_release_id": release_id, "_expect": list(expect),
                                            "state": to_state, **values})
    if result.rowcount != 1:
        return False
    # The row is ours until commit, so what we wrote is what it holds: an instance of it in the
    # session is told so, and nothing is reloaded (expiring it cost a SELECT of the full row at
    # its audit and at every later read).
    instance = db.session.identity_map.get(identity_key(Release, release_id))
    if instance is not None:
        for key, value in (("state", to_state), *values.items()):
            set_committed_value(instance, key, value)
    return True


def _move_row(release_id: int, environment_id: int, from_state: str, to_state: str, actor: Actor, *,
              expect: tuple[str, ...], reason: str = "", where: tuple = (), through: tuple[str, str] | None = None,
              **values: Any) -> bool:
    """Compare-and-set the state of a release known by id; on success write the audit event
    and return True.

    `through` (state, reason): a state passed through on the way, in the same compare-and-set,
    audited as a move of its own.

    The environment's row is locked before the release's: one order for every move, so two
    moves in one environment (a reject that dispatches the queue, a cancel of the release it
    would dispatch) wait for each other on PostgreSQL instead of deadlocking."""
    _lock_environment(environment_id)
    if not _set_state(release_id, to_state, expect=expect, where=where, **values):
        return False
    named = {"release_id": release_id, "environment_id": environment_id}
    if through is not None:
        audit(actor, "state", **named, from_state=from_state, to_state=through[0], reason=through[1])
        from_state = through[0]
    audit(actor, "state", **named, from_state=from_state, to_state=to_state, reason=reason)
    return True


def _move(release: Release, to_state: str, actor: Actor, **options: Any) -> bool:
    """_move_row() for a loaded release, which is reloaded when the move did not happen."""
    if _move_row(release.id, release.environment_id, release.state, to_state, actor, **options):
        return True
    db.session.refresh(release)
    return False


def _lock_environment(environment_id: int) -> sa.Row:
    """Lock an environment's row for this transaction (see dispatch_queue); returns its modes."""
    db.session.flush()  # the queries that follow are Core: no autoflush
    return db.session.execute(_LOCK_ENVIRONMENT, {"environment_id": environment_id}).one()


def _wrong_state(release: Release, doing: str, needs: str) -> WrongState:
    return WrongState(f"Release #{release.id} is {release.state.replace('_', ' ').lower()}, so it cannot be "
                      f"{doing} (only a release that is {needs} can); nothing was changed.")


# -- dispatch -------------------------------------------------------------------------------

def dispatch_queue(environment_id: int) -> None:
    """Within the current transaction: give the free slot to the oldest queued release,
    or in parallel mode start every queued one."""
    # Locking the environment row serialises dispatches of one environment on PostgreSQL:
    # a trigger and a slot release committing together cannot both miss the queue.
    # NO KEY UPDATE does not conflict with the KEY SHARE lock a new release's foreign
    # key takes, so a trigger (insert, then dispatch) cannot deadlock with another.
    parallel, approval = _lock_environment(environment_id)
    queued = (Release.environment_id == environment_id, Release.state == "QUEUED")
    now = utcnow()
    if parallel:
        for release in db.session.scalars(sa.select(Release).where(*queued).order_by(Release.id)).all():
            if _move(release, "IN_PROGRESS", WORKER, expect=("QUEUED",), started_at=now,
                     reason="started at once (parallel releases)"):
                _enqueue("execute", release.id)
        return
    holder, release_id = db.session.execute(_SLOT, {"environment_id": environment_id}).one()
    if holder is not None or release_id is None:
        return
    to_state, job, reason = (("READY", "hook", "took the slot; running the pre-release hook") if approval else
                             ("IN_PROGRESS", "execute", "took the slot; approval workflow is off"))
    try:
        with db.session.begin_nested():
            moved = _move_row(release_id, environment_id, "QUEUED", to_state, WORKER, expect=("QUEUED",),
                              holds_slot=True, started_at=now, heartbeat_at=None, reason=reason)
    except IntegrityError:
        return  # another transaction took the slot first; it dispatches in turn
    if moved:
        _enqueue(job, release_id)


@transition
def dispatch(environment_id: int) -> None:
    """Dispatch an environment's queue (the reconciler's safety net)."""
    dispatch_queue(environment_id)
    commit_changes()


# -- trigger ----------------------------------------------------------------------------------

@transition
def trigger(environment: Environment, actor: Actor, resources: list[dict], *, ref: str | None = None,
            description: str = "", idempotency_key: str | None = None) -> tuple[Release, bool]:
    """Queue a release; returns (release, created). A repeated Idempotency-Key returns the first."""
    require(actor.user, "trigger_release", environment)
    if idempotency_key:
        existing = _by_idempotency_key(environment, actor.user, idempotency_key)
        if existing is not None:
            return existing, False
    release = Release(kind="RELEASE", project_id=environment.project_id, environment_id=environment.id,
                      state="QUEUED", ref=ref, commit=ref if ref and FULL_SHA.match(ref) else None,
                      description=description, resources=resources, triggered_by=actor.user,
                      idempotency_key=idempotency_key or None,
                      decisions=[], bot_release=None)  # none yet: known, so its answer reads none back
    db.session.add(release)
    try:
        db.session.flush()
    except IntegrityError:
        if not idempotency_key:
            raise  # a constraint this release broke, not a retry of one already made
        db.session.rollback()
        existing = _by_idempotency_key(environment, actor.user, idempotency_key)
        if existing is None:
            raise
        return existing, False
    audit(actor, "state", release=release, to_state="QUEUED", reason="triggered")
    dispatch_queue(environment.id)
    commit_changes()
    return release, True


def _by_idempotency_key(environment: Environment, user: User | None, key: str | None) -> Release | None:
    return db.session.scalar(sa.select(Release).where(
        Release.environment_id == environment.id, Release.triggered_by_id == (user.id if user else None),
        Release.idempotency_key == key))


# -- what the worker reports ----------------------------------------------------------------

@transition  # a write on a stale read snapshot fails at once on SQLite ("database is locked")
def claim_run(release_id: int, stage: str, **pinned: Any) -> bool:
    """Mark a hook ("hook") or apply ("execute") as started, once, and record in the same
    compare-and-set what it runs (`pinned`: commit, hook ref commit and path, or command).
    False: nothing to do (another job claimed it, or the release moved on)."""
    now = utcnow()
    started = "hook_started_at" if stage == "hook" else "exec_started_at"
    result = db.session.execute(_CLAIM[stage], {"_release_id": release_id, started: now, "heartbeat_at": now,
                                                **pinned})
    commit_changes()
    return result.rowcount == 1


@transition  # a write on a stale read snapshot fails at once on SQLite ("database is locked")
def heartbeat(release_id: int, state: str, **output: Any) -> bool:
    """Record liveness and output so far; False when the release left `state` (e.g. aborted)."""
    result = db.session.execute(_HEARTBEAT, {"_release_id": release_id, "_state": state, "heartbeat_at": utcnow(),
                                             **output})
    commit_changes()
    return result.rowcount == 1


@transition
def fail(release_id: int, error: str, actor: Actor = WORKER, *, expect: tuple[str, ...] = SLOT_STATES,
         state: str = "FAILED", where: tuple = (), **values: Any) -> bool:
    """End a release that cannot go on (FAILED, or `state`), freeing its slot."""
    release = get_release(release_id)
    if not _move(release, state, actor, expect=expect, error=error, reason=error, where=where, **values):
        return False
    dispatch_queue(release.environment_id)
    commit_changes()
    return True


@transition
def record_hook_result(release_id: int, *, exit_code: int | None, output: str, truncated: bool,
                       error: str | None = None, needs_approval_reason: str | None = None) -> str | None:
    """Apply the hook contract: 0 proceeds, 2 waits for approval, anything else fails.

    `needs_approval_reason` (the hook differs from the hook ref) turns a 0 into a wait:
    fail closed. Returns the new state, or None when the release had moved on.
    """
    # Core, and no ORM object: the worker does this after every hook
    row = db.session.execute(_HOOK_RESULT_CONTEXT, {"release_id": release_id}).one_or_none()
    if row is None:
        raise NotFound(f"Release #{release_id} does not exist.")
    environment_id = row.environment_id

    def move(to_state: str, **options: Any) -> bool:
        return _move_row(release_id, environment_id, row.state, to_state, WORKER, expect=("READY",),
                         hook_exit_code=exit_code, hook_output=output, hook_truncated=truncated, **options)

    if error is None and exit_code in (0, 2):
        if exit_code == 2 or needs_approval_reason:
            moved = move("PENDING_APPROVAL", reason=needs_approval_reason or "pre-release hook exited 2",
                         pending_since=utcnow())
            new_state = "PENDING_APPROVAL"
        elif _nothing_to_run(row):
            # Nothing to execute: through IN_PROGRESS to SUCCEEDED in one compare-and-set, rather
            # than through a second job.
            moved = move("SUCCEEDED", reason=NOTHING_RUN, through=("IN_PROGRESS", "pre-release hook exited 0"),
                         exec_output=NOTHING_RUN + "\n")
            new_state = "SUCCEEDED"
            if moved:
                dispatch_queue(environment_id)
        else:
            moved = move("IN_PROGRESS", reason="pre-release hook exited 0")
            new_state = "IN_PROGRESS"
            if moved:
                _enqueue("execute", release_id)
    else:
        error = error or f"The pre-release hook exited {exit_code}."
        moved = move("FAILED", reason=error, error=error)
        new_state = "FAILED"
        if moved:
            dispatch_queue(environment_id)
    commit_changes()
    return new_state if moved else None


@transition
def record_execution_result(release_id: int, *, exit_code: int | None, output: str, truncated: bool,
                            timed_out: bool = False, error: str | None = None) -> str | None:
    release = get_release(release_id)
    if timed_out:
        state, error = "TIMED_OUT", error or "The release command timed out."
    elif error is None and exit_code == 0:
        state = "SUCCEEDED"
    else:
        state, error = "FAILED", error or f"The release command exited {exit_code}."
    moved = _move(release, state, WORKER, expect=("IN_PROGRESS",), reason=error or "release command exited 0",
                  error=error, exec_exit_code=exit_code, exec_output=output, exec_truncated=truncated)
    if moved:
        dispatch_queue(release.environment_id)
    commit_changes()
    return state if moved else None


@transition
def succeed_without_command(release_id: int) -> bool:
    moved = _succeed_without_command(get_release(release_id))
    commit_changes()
    return moved


NOTHING_RUN = "No release command is set for this environment, so nothing was run."


def _nothing_to_run(environment: Environment | sa.Row) -> bool:
    return not (environment.release_command or "").strip() and not environment.wait_for_external_finish


def _succeed_without_command(release: Release) -> bool:
    """Within the current transaction: IN_PROGRESS → SUCCEEDED, nothing run; frees the slot."""
    moved = _move(release, "SUCCEEDED", WORKER, expect=("IN_PROGRESS",), reason=NOTHING_RUN,
                  exec_output=NOTHING_RUN + "\n")
    if moved:
        dispatch_queue(release.environment_id)
    return moved


# -- decisions ------------------------------------------------------------------------------------

def may_decide(release: Release, user: User | None) -> bool:
    """Whether `user` may approve or reject `release` (SPEC §6: never one's own, unless allowed)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if release.triggered_by_id == user.id and not release.environment.allow_self_approval:
        return False
    return has_permission(user, "approve_release", release.environment)


def decidable_releases(user: User):
    """SELECT of the PENDING_APPROVAL releases `user` may decide: the rule of may_decide in SQL."""
    query = (sa.select(Release).join(Environment, Release.environment_id == Environment.id)
             .where(Release.state == "PENDING_APPROVAL"))
    if not user.is_admin:
        query = query.where(sa.select(Grant.id).where(
            Grant.user_id == user.id, Grant.permission == "approve_release",
            Grant.environment_id.is_(None) | (Grant.environment_id == Release.environment_id)).exists())
    return query.where(Release.triggered_by_id.is_(None) | (Release.triggered_by_id != user.id)
                       | Environment.allow_self_approval)


def _check_decider(release: Release, actor: Actor) -> None:
    require(actor.user, "approve_release", release.environment)
    if release.triggered_by_id == actor.user.id and not release.environment.allow_self_approval:
        raise PermissionDenied("You triggered this release, so someone else must approve or reject it "
                               "(withdraw it if it should not go ahead).")


@transition
def approve(release_id: int, actor: Actor, comment: str = "") -> Release:
    """Approve a pending release: it becomes APPROVED and its BOT release takes the slot directly."""
    release = get_release(release_id)
    _check_decider(release, actor)
    if not _move(release, "APPROVED", actor, expect=("PENDING_APPROVAL",), reason=comment or "approved"):
        db.session.rollback()
        raise _wrong_state(release, "approved", "pending approval")
    db.session.add(Decision(release_id=release.id, user_id=actor.user.id, decision="APPROVE",
                            comment=comment, via=actor.via))
    now = utcnow()
    bot = Release(kind="BOT", project_id=release.project_id, environment_id=release.environment_id,
                  state="IN_PROGRESS", holds_slot=True, ref=release.commit, commit=release.commit,
                  description=release.description, resources=release.resources, triggered_by=actor.user,
                  parent_release_id=release.id, hook_path=release.hook_path,
                  hook_ref_commit=release.hook_ref_commit, started_at=now)
    db.session.add(bot)
    db.session.flush()
    audit(actor, "state", release=bot, to_state="IN_PROGRESS",
          reason=f"bot release for approved release #{release.id}; the hook is skipped")
    _enqueue("execute", bot.id)
    commit_changes()
    return bot


@transition
def reject(release_id: int, actor: Actor, comment: str = "") -> Release:
    release = get_release(release_id)
    _check_decider(release, actor)
    if not _move(release, "REJECTED", actor, expect=("PENDING_APPROVAL",), reason=comment or "rejected"):
        db.session.rollback()
        raise _wrong_state(release, "rejected", "pending approval")
    db.session.add(Decision(release_id=release.id, user_id=actor.user.id, decision="REJECT",
                            comment=comment, via=actor.via))
    dispatch_queue(release.environment_id)
    commit_changes()
    return release


def may_cancel(release: Release, user: User | None) -> bool:
    """The triggerer may cancel their own queued or pending release without cancel_release."""
    return user is not None and release.triggered_by_id == user.id


@transition
def cancel(release_id: int, actor: Actor) -> Release:
    """Cancel a queued release, or withdraw one's own pending release."""
    release = get_release(release_id)
    judged = release.state
    own = may_cancel(release, actor.user)
    if judged == "PENDING_APPROVAL":
        if not own:
            raise PermissionDenied("Only the person who triggered a pending release can withdraw it; "
                                   "reviewers reject it instead.")
        reason = f"withdrawn by {actor.name}"
    elif judged == "QUEUED":
        if not own:
            require(actor.user, "cancel_release", release.environment)
        reason = f"cancelled by {actor.name}"
    else:
        raise _wrong_state(release, "cancelled", "queued or pending approval")
    # The rules above were judged on `judged`: the compare-and-set accepts exactly that state.
    # A queued release that became pending meanwhile is one only its triggerer may withdraw.
    if not _move(release, "CANCELLED", actor, expect=(judged,), reason=reason):
        now = release.state.replace("_", " ").lower()  # _move reloaded it
        db.session.rollback()
        raise WrongState(f"Release #{release_id} changed while you were cancelling it (it is {now} now); "
                         "nothing was changed. Look at it again before you retry.")
    dispatch_queue(release.environment_id)
    commit_changes()
    return release


@transition
def abort(release_id: int, actor: Actor) -> Release:
    """Stop a READY or IN_PROGRESS release; its worker sees the change and kills its processes."""
    release = get_release(release_id)
    require(actor.user, "cancel_release", release.environment)
    message = f"aborted by {actor.name}"
    if not _move(release, "FAILED", actor, expect=("READY", "IN_PROGRESS"), reason=message, error=message):
        db.session.rollback()
        raise _wrong_state(release, "aborted", "ready or in progress")
    dispatch_queue(release.environment_id)
    commit_changes()
    return release


@transition
def finish(release_id: int, actor: Actor, result: str, log: str = "") -> Release:
    """An external deployer reports the outcome of a release that waits for it."""
    release = get_release(release_id)
    require(actor.user, "trigger_release", release.environment)
    environment = release.environment
    if not environment.wait_for_external_finish or environment.release_command:
        raise WrongState(f"{environment.project.name}/{environment.name} does not wait for an external "
                         "finish, so its releases cannot be finished through the API.")
    error = None if result == "SUCCEEDED" else f"reported failed by {actor.name}"
    if not _move(release, result, actor, expect=("IN_PROGRESS",), reason=f"finish reported by {actor.name}",
                 error=error, exec_output=log):
        db.session.rollback()
        raise _wrong_state(release, "finished", "in progress")
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
