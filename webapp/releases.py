"""The release state machine: every rule about how a release moves lives here.

Each public function is one transaction: compare-and-set on the release's state, an
audit event beside it, and jobs enqueued only after the commit. None needs a request,
so views, jobs, the CLI and tests all call the same code.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from . import approval_rules, windows
from .extensions import db
from .live import bump_version
from .models import TERMINAL_STATES, Decision, EmailLink, Environment, Project, Release, User, utcnow
from .permissions import PermissionDenied, decide_refusal, may_cancel, require
from .transactions import (
    SYSTEM,
    WORKER,
    Actor,
    after_commit,
    audit,
    commit_changes,
    database_now,
    lock_environment,
    move,
    revoke_email_links,
    transition,
)

__all__ = ["SYSTEM", "WORKER", "Actor", "ReleaseError", "NotFound", "WrongState", "TRANSITIONS"]

# SPEC §3's diagram as a table: state → the states it may move to → the actions that make each
# move. _move() refuses anything else before it sends any SQL, and tests/unit/test_transitions.py
# holds this table to the diagram (the README's, which draws SPEC §3's), both ways. Terminal
# states move nowhere.
TRANSITIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "QUEUED": {
        "READY": ("dispatch",),        # took the slot, approval workflow on: the hook decides
        "IN_PROGRESS": ("dispatch",),  # approval workflow off, parallel releases, a BOT or emergency release
        "SCHEDULED": ("dispatch",),    # as IN_PROGRESS, but outside every change window or in a freeze
        "CANCELLED": ("cancel",),
    },
    "READY": {
        "IN_PROGRESS": ("hook result",),       # exit 0
        "SCHEDULED": ("hook result",),         # exit 0, outside every change window or in a freeze
        "PENDING_APPROVAL": ("hook result",),  # exit 2, or 0 from a hook unlike the hook ref's
        "FAILED": ("hook result", "abort", "fail"),  # fail: worker lost, or no run could start
    },
    "PENDING_APPROVAL": {
        "APPROVED": ("approve",),       # its BOT release takes the slot in the same transaction
        "REJECTED": ("reject", "fail"),  # fail: the approval timeout expired
        "CANCELLED": ("cancel",),       # withdrawn by its triggerer
        "QUEUED": ("break glass",),     # an emergency release took the slot; its hook runs again later
    },
    "SCHEDULED": {
        "IN_PROGRESS": ("window opened",),  # a window opened, a freeze ended, or the settings changed
        "FAILED": ("abort",),
        "QUEUED": ("break glass",),         # an emergency release took the slot; it waits behind it
        "CANCELLED": ("break glass",),      # a BOT release: its approval was for what ran before
    },
    "IN_PROGRESS": {
        "SCHEDULED": ("window closed",),  # its apply had not started when the window closed
        "SUCCEEDED": ("execution result", "nothing to run", "finish"),
        "FAILED": ("execution result", "abort", "finish", "fail"),
        "TIMED_OUT": ("execution result", "fail"),  # fail: no external finish in time
    },
}

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


# -- one move -------------------------------------------------------------------------------

def get_release(release_id: int) -> Release:
    release = db.session.get(Release, release_id)
    if release is None:
        raise NotFound(f"Release #{release_id} does not exist.")
    return release


def _move(release: Release, to_state: str, actor: Actor, action: str, *, expect: tuple[str, ...],
          **options: Any) -> bool:
    """transactions.move(), once TRANSITIONS allows `action` to move `release` from each of the
    `expect` states to `to_state`; a move the table lacks raises, before any SQL."""
    for from_state in expect:
        if action not in TRANSITIONS.get(from_state, {}).get(to_state, ()):
            raise ValueError(f"{from_state} → {to_state} by {action!r} is not a move of SPEC §3 (TRANSITIONS)")
    return move(release, to_state, actor, expect=expect, **options)


def _wrong_state(release: Release, doing: str, needs: str) -> WrongState:
    return WrongState(f"Release #{release.id} is {release.state.replace('_', ' ').lower()}, so it cannot be "
                      f"{doing} (only a release that is {needs} can); nothing was changed.")


# -- dispatch -------------------------------------------------------------------------------

def dispatch_queue(environment_id: int, now: datetime | None = None) -> None:
    """Within the current transaction: start the scheduled releases a change window lets start,
    then give the free slot to the oldest queued release (emergency releases first), or in
    parallel mode start every queued one. Windows are judged at `now`, the database's clock
    unless a test passes a moment in, once this transaction holds the environment."""
    # Locking the environment row serialises dispatches of one environment on PostgreSQL:
    # a trigger and a slot release committing together cannot both miss the queue.
    # NO KEY UPDATE does not conflict with the KEY SHARE lock a new release's foreign
    # key takes, so a trigger (insert, then dispatch) cannot deadlock with another.
    parallel, approval = lock_environment(environment_id)
    verdict = _window_verdict(environment_id, now)
    _start_scheduled(environment_id, verdict)
    queued = sa.select(Release).where(Release.environment_id == environment_id, Release.state == "QUEUED")
    first = (Release.break_glass_reason.is_(None), Release.id)  # emergencies, then FIFO by trigger time
    if not parallel:
        _make_way_for_emergency(environment_id, db.session.scalar(queued.order_by(*first).limit(1)))
    if parallel:
        for release in db.session.scalars(queued.order_by(*first)).all():
            _start(release, verdict, "dispatch", expect=("QUEUED",), reason="started at once (parallel releases)")
        return
    holder = sa.select(Release.id).where(Release.environment_id == environment_id, Release.holds_slot)
    if db.session.scalar(holder.limit(1)) is not None:
        return
    release = db.session.scalar(queued.order_by(*first).limit(1))
    if release is None:
        return
    try:
        with db.session.begin_nested():
            if approval and release.kind == "RELEASE" and release.break_glass_reason is None:
                if _move(release, "READY", WORKER, "dispatch", expect=("QUEUED",), holds_slot=True, started_at=utcnow(),
                         heartbeat_at=None, reason="took the slot; running the pre-release hook"):
                    _enqueue("hook", release.id)
            else:
                _start(release, verdict, "dispatch", expect=("QUEUED",), holds_slot=True, heartbeat_at=None,
                       reason=_skips_hook(release, approval))
    except IntegrityError:
        return  # another transaction took the slot first; it dispatches in turn


def _skips_hook(release: Release, approval: bool) -> str:
    if release.break_glass_reason is not None:
        return "took the slot; an emergency release skips the hook, the approval rules and the change windows"
    if release.kind == "BOT":
        return "took the slot; a bot release skips the hook"
    return "took the slot; approval workflow is off" if not approval else "took the slot"


def _window_verdict(environment_id: int, now: datetime | None) -> windows.Verdict:
    """May releases of the environment start applying now (windows.py)? Its settings as committed."""
    row = db.session.execute(
        sa.select(Environment.change_windows, Environment.freezes, Project.change_windows, Project.freezes)
        .join(Project, Environment.project_id == Project.id).where(Environment.id == environment_id)).one()
    return windows.judge(*windows.effective(*row), now if now is not None else database_now())


def _start(release: Release, verdict: windows.Verdict, action: str, *, expect: tuple[str, ...], reason: str,
           **values: Any) -> str | None:
    """Move `release` on to apply: IN_PROGRESS, or SCHEDULED while `verdict` says no window is
    open (an emergency release never waits). Returns the state it moved to, or None. The caller
    enqueues what IN_PROGRESS runs, unless it is dispatch, which does it here."""
    if verdict.open or release.break_glass_reason is not None:
        if not _move(release, "IN_PROGRESS", WORKER, action, expect=expect, reason=reason,
                     started_at=release.started_at or utcnow(), **values):
            return None
        if action == "dispatch":
            _enqueue("execute", release.id)
        return "IN_PROGRESS"
    if not _move(release, "SCHEDULED", WORKER, action, expect=expect, reason=f"{reason}; {verdict.reason}",
                 started_at=release.started_at or utcnow(), scheduled_reason=verdict.reason,
                 scheduled_until=verdict.until, **values):
        return None
    return "SCHEDULED"


def _start_scheduled(environment_id: int, verdict: windows.Verdict) -> None:
    """Within the current transaction, the environment locked: scheduled releases start when
    `verdict` lets them (a compare-and-set from SCHEDULED), or learn the new reason they wait."""
    waiting = db.session.scalars(sa.select(Release).where(Release.environment_id == environment_id,
                                                          Release.state == "SCHEDULED").order_by(Release.id)).all()
    for release in waiting:
        if verdict.open:
            if _move(release, "IN_PROGRESS", WORKER, "window opened", expect=("SCHEDULED",),
                     reason="the change window is open", scheduled_reason=None, scheduled_until=None):
                _enqueue("execute", release.id)
        elif (release.scheduled_reason, release.scheduled_until) != (verdict.reason, verdict.until):
            release.scheduled_reason, release.scheduled_until = verdict.reason, verdict.until
            after_commit(bump_version)  # the pages say why it waits


@transition
def dispatch(environment_id: int, now: datetime | None = None) -> None:
    """Dispatch an environment's queue, and start what a change window lets start (the
    reconciler's safety net and clock)."""
    dispatch_queue(environment_id, now)
    commit_changes()


# -- trigger ----------------------------------------------------------------------------------

BREAK_GLASS_REASON = (10, 2_000)  # characters: a sentence someone can review afterwards


class Unacceptable(ReleaseError):
    status = 422


@transition
def trigger(environment: Environment, actor: Actor, resources: list[dict], *, ref: str | None = None,
            description: str = "", idempotency_key: str | None = None,
            break_glass: str | None = None) -> tuple[Release, bool]:
    """Queue a release; returns (release, created). A repeated Idempotency-Key returns the first.
    `break_glass` (a reason) makes it an emergency release: see _break_glass."""
    require(actor.user, "trigger_release", environment)
    if break_glass is not None:
        break_glass = _check_break_glass(environment, actor, break_glass)
    if idempotency_key:
        existing = _by_idempotency_key(environment, actor.user, idempotency_key)
        if existing is not None:
            return existing, False
    release = Release(kind="RELEASE", project_id=environment.project_id, environment_id=environment.id,
                      state="QUEUED", ref=ref, commit=ref if ref and FULL_SHA.fullmatch(ref) else None,
                      description=description, resources=resources, triggered_by=actor.user,
                      idempotency_key=idempotency_key or None, break_glass_reason=break_glass,
                      review_due_at=(utcnow() + timedelta(hours=environment.break_glass_review_hours)
                                     if break_glass is not None else None),
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
    if break_glass is not None:
        _break_glass(release, actor)
    dispatch_queue(environment.id)
    commit_changes()
    return release, True


def _check_break_glass(environment: Environment, actor: Actor, reason: str) -> str:
    """The reason of an emergency release, once its triggerer and environment may have one."""
    require(actor.user, "break_glass", environment)
    where = f"{environment.project.name}/{environment.name}"
    if not environment.allow_break_glass:
        raise WrongState(f"{where} does not allow emergency releases (allow_break_glass is off); trigger a "
                         "normal release, or ask an admin to turn emergency releases on for it.")
    reason = " ".join(reason.split())
    shortest, longest = BREAK_GLASS_REASON
    if not shortest <= len(reason) <= longest:
        raise Unacceptable(f"An emergency release needs a reason of {shortest} to {longest:,} characters, saying "
                           "what is broken and why it cannot wait: it is reviewed afterwards.")
    return reason


def _break_glass(release: Release, actor: Actor) -> None:
    """Within the trigger's transaction: record the emergency, once the environment is locked and
    still allows it (a switch turned off meanwhile wins). dispatch_queue then gives it the slot,
    or makes way for it (_make_way_for_emergency)."""
    lock_environment(release.environment_id)
    if not db.session.scalar(sa.select(Environment.allow_break_glass)
                             .where(Environment.id == release.environment_id)):
        db.session.rollback()
        raise WrongState("Emergency releases were turned off for this environment a moment ago; nothing was "
                         "triggered.")
    audit(actor, "break_glass", release=release, reason=f"emergency release: {release.break_glass_reason}",
          details={"review_due_at": release.review_due_at.strftime("%Y-%m-%dT%H:%M:%SZ")})


def _make_way_for_emergency(environment_id: int, first: Release | None) -> None:
    """Within a dispatch, the environment locked: when the first queued release is an emergency
    one and the slot is held by a release that only waits (for approval, or for a window), that
    release leaves the slot. An emergency release skips the hook, the approval rules and the
    windows; nothing of the waiting one ran, and a running one is never interrupted.

    A release goes back to the queue right behind it: its hook runs again when it gets the slot,
    against what the emergency release deployed, and the approvals given so far no longer count
    (they were given for what was deployed before). A bot release is cancelled: its approval
    was for what ran before, and applying it now could undo the emergency fix."""
    if first is None or first.break_glass_reason is None:
        return
    holder = db.session.scalar(sa.select(Release).where(Release.environment_id == environment_id,
                                                        Release.holds_slot))
    if holder is None or holder.state not in ("PENDING_APPROVAL", "SCHEDULED"):
        return
    by = first.triggered_by.username if first.triggered_by else "someone"
    if holder.kind == "BOT":
        why = (f"cancelled: emergency release #{first.id} (by {by}) took the slot, and this bot release's approval "
               "was given for what was deployed before; trigger the release again if it is still wanted")
        _move(holder, "CANCELLED", SYSTEM, "break glass", expect=("SCHEDULED",), reason=why, error=why)
        return
    given = [decision.user.username if decision.user else "someone" for decision in holder.decisions]
    why = f"back to the queue behind emergency release #{first.id} (by {by})"
    if holder.environment.approval_workflow:
        why += "; its hook runs again when it gets the slot"
    if given:
        why += f", and the approvals given so far ({', '.join(given)}) no longer count"
    if not _move(holder, "QUEUED", SYSTEM, "break glass", expect=(holder.state,), reason=why, finished_at=None,
                 started_at=None, heartbeat_at=None, hook_started_at=None, hook_exit_code=None, hook_output="",
                 hook_truncated=False, pending_since=None, reminded_at=None, approval_rules=None,
                 approval_reason=None, scheduled_reason=None, scheduled_until=None, error=None,
                 since=None):  # what changed is compared again, with the emergency release deployed
        return
    db.session.execute(sa.delete(Decision).where(Decision.release_id == holder.id))
    db.session.expire(holder, ["decisions"])
    revoke_email_links(EmailLink.release_id == holder.id, f"release #{holder.id} went {why}")


def _by_idempotency_key(environment: Environment, user: User | None, key: str | None) -> Release | None:
    return db.session.scalar(sa.select(Release).where(
        Release.environment_id == environment.id, Release.triggered_by_id == (user.id if user else None),
        Release.idempotency_key == key))


# -- what the worker reports ----------------------------------------------------------------

@transition  # a write on a stale read snapshot fails at once on SQLite ("database is locked")
def claim_run(release_id: int, stage: str, **pinned: Any) -> bool:
    """Mark a hook ("hook") or apply ("execute") as started, once, and record in the same
    compare-and-set what it runs (`pinned`: commit, hook ref commit and path, or command).
    False: nothing to do (another job claimed it, or the release moved on, or an apply found its
    change window closed: _window_closed)."""
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
    verdict = _window_verdict(release.environment_id, None)
    if verdict.open:
        return False
    moved = _move(release, "SCHEDULED", WORKER, "window closed", expect=("IN_PROGRESS",),
                  reason=f"the change window closed before it started applying; {verdict.reason}",
                  where=(Release.exec_started_at.is_(None),), scheduled_reason=verdict.reason,
                  scheduled_until=verdict.until)
    commit_changes()
    return moved


@transition  # a write on a stale read snapshot fails at once on SQLite ("database is locked")
def heartbeat(release_id: int, state: str, **output: Any) -> bool:
    """Record liveness and output so far; False when the release left `state` (e.g. aborted)."""
    result = db.session.execute(
        sa.update(Release).where(Release.id == release_id, Release.state == state)
        .values(heartbeat_at=utcnow(), **output).execution_options(synchronize_session=False))
    commit_changes()
    return result.rowcount == 1


@transition
def fail(release_id: int, error: str, actor: Actor = WORKER, *, expect: tuple[str, ...],
         state: str = "FAILED", where: tuple = (), **values: Any) -> bool:
    """End a release that cannot go on (FAILED, or `state`), freeing its slot."""
    release = get_release(release_id)
    if not _move(release, state, actor, "fail", expect=expect, error=error, reason=error, where=where, **values):
        return False
    dispatch_queue(release.environment_id)
    commit_changes()
    return True


@transition
def record_hook_result(release_id: int, *, exit_code: int | None, output: str, truncated: bool,
                       error: str | None = None, needs_approval_reason: str | None = None,
                       verdict: bytes | None = None) -> str | None:
    """Apply the hook contract: 0 proceeds, 2 waits for approval, anything else fails.
    `needs_approval_reason` (the hook differs from the hook ref) turns a 0 into a wait: fail
    closed; it ends the stored output only when the release does wait. `verdict` (what the hook
    wrote to $RELEASE_VERDICT) adds approval rules to a wait, and is ignored after an exit 0.
    A wait whose rules nobody could meet fails instead. Returns the new state, or None when the
    release had moved on."""
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
        new_state = _start(release, _window_verdict(release.environment_id, None), "hook result",
                           expect=("READY",), reason="pre-release hook exited 0", **hook)
        moved = new_state is not None
    else:
        moved = _move(release, new_state, WORKER, "hook result", expect=("READY",), reason=reason, **hook)
    if not moved:
        commit_changes()
        return None
    if new_state in ("FAILED", "PENDING_APPROVAL", "SCHEDULED"):
        dispatch_queue(release.environment_id)  # the slot is free, or a queued emergency release needs it
    elif new_state == "IN_PROGRESS" and not _nothing_to_run(release.environment):
        _enqueue("execute", release_id)
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
    moved = _move(release, state, WORKER, "execution result", expect=("IN_PROGRESS",),
                  reason=error or "release command exited 0", error=error, exec_exit_code=exit_code,
                  exec_output=output, exec_truncated=truncated)
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


def _nothing_to_run(environment: Environment) -> bool:
    return not (environment.release_command or "").strip() and not environment.wait_for_external_finish


def _succeed_without_command(release: Release) -> bool:
    """Within the current transaction: IN_PROGRESS → SUCCEEDED, nothing run; frees the slot."""
    moved = _move(release, "SUCCEEDED", WORKER, "nothing to run", expect=("IN_PROGRESS",), reason=NOTHING_RUN,
                  exec_output=NOTHING_RUN + "\n")
    if moved:
        dispatch_queue(release.environment_id)
    return moved


# -- decisions ------------------------------------------------------------------------------------

def _check_decider(release: Release, actor: Actor) -> None:
    refusal = decide_refusal(release, actor.user)
    if refusal is not None:
        raise PermissionDenied(refusal)


def _pending_progress(release: Release, doing: str) -> approval_rules.Progress:
    """The progress of `release`'s rules, read once this transaction holds its environment: the
    decisions of one environment are counted one at a time, each on what the last one left."""
    lock_environment(release.environment_id)
    db.session.refresh(release)
    db.session.refresh(release.environment)  # its settings as committed now (self-approval, authors)
    if release.state != "PENDING_APPROVAL":
        db.session.rollback()
        raise _wrong_state(release, doing, "pending approval")
    return approval_rules.progress(release)


@transition
def approve(release_id: int, actor: Actor, comment: str = "") -> Release:
    """Count an approval for every rule of a pending release its giver may count for, met
    already or not (an earlier approval may stop counting while the release waits). When the
    last rule is met, the release becomes APPROVED and its BOT release takes the slot
    in the same transaction; that BOT release is returned, else the release (rules remain).
    An approval that would count for no rule is refused (WrongState)."""
    release = get_release(release_id)
    _check_decider(release, actor)
    progress = _pending_progress(release, "approved")
    if not progress.counts_for(actor.user):
        db.session.rollback()
        raise WrongState(progress.why_not(actor.user))
    counted = progress.counted_for(actor.user)
    digest = approval_rules.digest(release)
    db.session.add(Decision(release_id=release.id, user_id=actor.user.id, decision="APPROVE",
                            comment=comment, via=actor.via, rules=counted, digest=digest))
    db.session.flush()
    progress = approval_rules.progress(release)
    if not progress.met:
        audit(actor, "approval", release=release, reason=comment or f"approved as {', '.join(counted)}",
              details={"rules": counted, "progress": progress.summary()})
        commit_changes()
        return release
    if not _move(release, "APPROVED", actor, "approve", expect=("PENDING_APPROVAL",), reason=comment or "approved"):
        db.session.rollback()
        raise _wrong_state(release, "approved", "pending approval")
    verdict = _window_verdict(release.environment_id, None)  # approvals can be given during a freeze
    state = "IN_PROGRESS" if verdict.open else "SCHEDULED"
    bot = Release(kind="BOT", project_id=release.project_id, environment_id=release.environment_id,
                  state=state, holds_slot=True, ref=release.commit, commit=release.commit,
                  description=release.description, resources=release.resources, triggered_by=actor.user,
                  parent_release_id=release.id, hook_path=release.hook_path,
                  hook_ref_commit=release.hook_ref_commit, started_at=utcnow(), approval_digest=digest,
                  since=release.since,  # what was approved is what changes
                  scheduled_reason=verdict.reason or None, scheduled_until=verdict.until)
    db.session.add(bot)
    db.session.flush()
    reason = f"bot release for approved release #{release.id}; the hook is skipped"
    audit(actor, "state", release=bot, to_state=state, reason=reason if verdict.open else f"{reason}; {verdict.reason}")
    if verdict.open:
        _enqueue("execute", bot.id)
    commit_changes()
    return bot


@transition
def reject(release_id: int, actor: Actor, comment: str = "") -> Release:
    """Reject a pending release: one rejection by anyone who could count for a rule is enough."""
    release = get_release(release_id)
    _check_decider(release, actor)
    progress = _pending_progress(release, "rejected")
    if not progress.may_reject(actor.user):
        db.session.rollback()
        raise PermissionDenied(approval_rules.reject_refusal(progress))
    if not _move(release, "REJECTED", actor, "reject", expect=("PENDING_APPROVAL",), reason=comment or "rejected"):
        db.session.rollback()
        raise _wrong_state(release, "rejected", "pending approval")
    db.session.add(Decision(release_id=release.id, user_id=actor.user.id, decision="REJECT",
                            comment=comment, via=actor.via, digest=approval_rules.digest(release)))
    dispatch_queue(release.environment_id)
    commit_changes()
    return release


def expires_at(pending_since: datetime | None, hours: float | None) -> datetime | None:
    """When a pending release is rejected as expired (approval_timeout_hours); None: never."""
    return pending_since + timedelta(hours=hours) if pending_since is not None and hours else None


@transition
def remind(release_id: int, last: datetime | None, now: datetime) -> bool:
    """Record a reminder of a pending release, once: a compare-and-set on when it was last
    reminded, so two reconcilers never remind twice. The audit event mails those still counting."""
    release = get_release(release_id)
    result = db.session.execute(
        sa.update(Release).where(Release.id == release_id, Release.state == "PENDING_APPROVAL",
                                 Release.reminded_at.is_(None) if last is None else Release.reminded_at == last)
        .values(reminded_at=now).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.rollback()
        return False
    waited = now - (release.pending_since or now)
    audit(SYSTEM, "reminder", release=release,
          reason=f"reminder: waiting for approval for {waited.total_seconds() / 3600:.0f} h",
          details={"hours": release.environment.reminder_hours})
    commit_changes()
    return True


REVIEW_COMMENT = 5_000  # like every decision's comment


@transition
def review(release_id: int, actor: Actor, comment: str) -> Release:
    """Mark a finished emergency release reviewed, once: by someone who may approve its
    environment and did not trigger it, with a comment on what was done."""
    release = get_release(release_id)
    if release.break_glass_reason is None:
        raise WrongState(f"Release #{release.id} is not an emergency release, so it needs no review.")
    require(actor.user, "approve_release", release.environment)
    if release.triggered_by_id == actor.user.id:
        raise PermissionDenied("You triggered this emergency release, so someone else with the \u201cRelease "
                               "Approval/Reject\u201d permission must review it.")
    comment = comment.strip()
    if not comment or len(comment) > REVIEW_COMMENT:
        raise Unacceptable(f"A review needs a comment of at most {REVIEW_COMMENT:,} characters: what was done, "
                           "and whether it was the right call.")
    if release.state not in TERMINAL_STATES:
        raise _wrong_state(release, "reviewed", "finished")
    result = db.session.execute(
        sa.update(Release).where(Release.id == release.id, Release.reviewed_at.is_(None))
        .values(reviewed_by_id=actor.user.id, review_comment=comment, reviewed_at=utcnow())
        .execution_options(synchronize_session="fetch"))
    if result.rowcount != 1:
        db.session.rollback()
        release = get_release(release_id)
        by = release.reviewed_by.username if release.reviewed_by else "someone"
        raise WrongState(f"Release #{release.id} was reviewed already, by {by}; nothing was changed.")
    audit(actor, "review", release=release, reason=comment)
    commit_changes()
    return release


@transition
def announce_overdue_review(release_id: int, last: datetime | None, now: datetime) -> bool:
    """Record that an emergency release's review is overdue, once per announcement: a
    compare-and-set on when it was last announced (reconcile.announce_overdue_reviews)."""
    release = get_release(release_id)
    result = db.session.execute(
        sa.update(Release).where(Release.id == release_id, Release.reviewed_at.is_(None),
                                 Release.review_announced_at.is_(None) if last is None
                                 else Release.review_announced_at == last)
        .values(review_announced_at=now).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        db.session.rollback()
        return False
    audit(SYSTEM, "review_overdue", release=release,
          reason=f"the review of emergency release #{release.id} was due {release.review_due_at:%Y-%m-%d %H:%M} UTC",
          details={"review_due_at": release.review_due_at.strftime("%Y-%m-%dT%H:%M:%SZ")})
    commit_changes()
    return True


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
    if not _move(release, "CANCELLED", actor, "cancel", expect=(judged,), reason=reason):
        now = release.state.replace("_", " ").lower()  # _move reloaded it
        db.session.rollback()
        raise WrongState(f"Release #{release_id} changed while you were cancelling it (it is {now} now); "
                         "nothing was changed. Look at it again before you retry.")
    dispatch_queue(release.environment_id)
    commit_changes()
    return release


@transition
def abort(release_id: int, actor: Actor) -> Release:
    """Stop a READY, SCHEDULED or IN_PROGRESS release; its worker sees the change and kills its
    processes."""
    release = get_release(release_id)
    require(actor.user, "cancel_release", release.environment)
    message = f"aborted by {actor.name}"
    if not _move(release, "FAILED", actor, "abort", expect=("READY", "SCHEDULED", "IN_PROGRESS"), reason=message,
                 error=message):
        db.session.rollback()
        raise _wrong_state(release, "aborted", "ready, scheduled or in progress")
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
    if not _move(release, result, actor, "finish", expect=("IN_PROGRESS",), reason=f"finish reported by {actor.name}",
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
