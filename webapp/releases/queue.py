"""Into the queue and out of it: trigger (emergency releases included), and dispatch, which
gives a free slot to the oldest queued release and starts what a change window lets start."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .. import windows
from ..extensions import db
from ..live import bump_version
from ..models import Decision, EmailLink, Environment, Project, Release, User, utcnow
from ..permissions import require
from ..transactions import (
    SYSTEM,
    WORKER,
    Actor,
    after_commit,
    audit,
    begin_or_join_write,
    commit_changes,
    database_now,
    lock_environment,
    revoke_email_links,
)
from .states import FULL_SHA, Unacceptable, WrongState, enqueue, move

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
    verdict = window_verdict(environment_id, now)
    _start_scheduled(environment_id, verdict)
    queued = sa.select(Release).where(Release.environment_id == environment_id, Release.state == "QUEUED")
    first = (Release.break_glass_reason.is_(None), Release.id)  # emergencies, then FIFO by trigger time
    if not parallel:
        _make_way_for_emergency(environment_id, db.session.scalar(queued.order_by(*first).limit(1)))
    if parallel:
        for release in db.session.scalars(queued.order_by(*first)).all():
            start(release, verdict, "dispatch", expect=("QUEUED",), reason="started at once (parallel releases)")
        return
    holder = sa.select(Release.id).where(Release.environment_id == environment_id, Release.holds_slot)
    if db.session.scalar(holder.limit(1)) is not None:
        return
    release = db.session.scalar(queued.order_by(*first).limit(1))
    if release is None:
        return
    try:
        with db.session.begin_nested():
            # Only a trigger queues a release (and an emergency sends one back), so it is never a bot release.
            if approval and release.break_glass_reason is None:
                if move(release, "READY", WORKER, "dispatch", expect=("QUEUED",), holds_slot=True, started_at=utcnow(),
                         heartbeat_at=None, reason="took the slot; running the pre-release hook"):
                    enqueue("hook", release.id)
            else:
                start(release, verdict, "dispatch", expect=("QUEUED",), holds_slot=True, heartbeat_at=None,
                       reason=_skips_hook(release))
    except IntegrityError:
        return  # another transaction took the slot first; it dispatches in turn


def _skips_hook(release: Release) -> str:
    if release.break_glass_reason is not None:
        return "took the slot; an emergency release skips the hook, the approval rules and the change windows"
    return "took the slot; approval workflow is off"


def window_verdict(environment_id: int, now: datetime | None) -> windows.Verdict:
    """May releases of the environment start applying now (windows.py)? Its settings as committed."""
    row = db.session.execute(
        sa.select(Environment.change_windows, Environment.freezes, Project.change_windows, Project.freezes)
        .join(Project, Environment.project_id == Project.id).where(Environment.id == environment_id)).one()
    return windows.judge(*windows.effective(*row), now if now is not None else database_now())


def start(release: Release, verdict: windows.Verdict, action: str, *, expect: tuple[str, ...], reason: str,
           **values: Any) -> str | None:
    """Move `release` on to apply: IN_PROGRESS, or SCHEDULED while `verdict` says no window is
    open (an emergency release never waits). Returns the state it moved to, or None. The caller
    enqueues what IN_PROGRESS runs, unless it is dispatch, which does it here."""
    if verdict.open or release.break_glass_reason is not None:
        if not move(release, "IN_PROGRESS", WORKER, action, expect=expect, reason=reason,
                     started_at=release.started_at or utcnow(), **values):
            return None
        if action == "dispatch":
            enqueue("execute", release.id)
        return "IN_PROGRESS"
    if not move(release, "SCHEDULED", WORKER, action, expect=expect, reason=f"{reason}; {verdict.reason}",
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
            if move(release, "IN_PROGRESS", WORKER, "window opened", expect=("SCHEDULED",),
                     reason="the change window is open", scheduled_reason=None, scheduled_until=None):
                enqueue("execute", release.id)
        elif (release.scheduled_reason, release.scheduled_until) != (verdict.reason, verdict.until):
            release.scheduled_reason, release.scheduled_until = verdict.reason, verdict.until
            after_commit(bump_version)  # the pages say why it waits


def dispatch(environment_id: int, now: datetime | None = None) -> None:
    """Dispatch an environment's queue, and start what a change window lets start (the
    reconciler's safety net and clock)."""
    begin_or_join_write()
    dispatch_queue(environment_id, now)
    commit_changes()


# -- trigger ----------------------------------------------------------------------------------

BREAK_GLASS_REASON = (10, 2_000)  # characters: a sentence someone can review afterwards



def trigger(environment: Environment, actor: Actor, resources: list[dict], *, ref: str | None = None,
            description: str = "", idempotency_key: str | None = None,
            break_glass: str | None = None) -> tuple[Release, bool]:
    """Queue a release; returns (release, created). A repeated Idempotency-Key returns the first.
    `break_glass` (a reason) makes it an emergency release: see _break_glass."""
    begin_or_join_write()
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
        move(holder, "CANCELLED", SYSTEM, "break glass", expect=("SCHEDULED",), reason=why, error=why)
        return
    given = [decision.user.username if decision.user else "someone" for decision in holder.decisions]
    why = f"back to the queue behind emergency release #{first.id} (by {by})"
    if holder.environment.approval_workflow:
        why += "; its hook runs again when it gets the slot"
    if given:
        why += f", and the approvals given so far ({', '.join(given)}) no longer count"
    if not move(holder, "QUEUED", SYSTEM, "break glass", expect=(holder.state,), reason=why, finished_at=None,
                 started_at=None, heartbeat_at=None, hook_started_at=None, hook_exit_code=None, hook_output="",
                 hook_truncated=False, pending_since=None, reminded_at=None, approval_rules=None,
                 approval_reason=None, scheduled_reason=None, scheduled_until=None, error=None,
                 since=None):  # what changed is compared again, with the emergency release deployed
        return
    db.session.execute(sa.delete(Decision).where(Decision.release_id == holder.id))
    db.session.expire(holder, ["decisions"])
    revoke_email_links(EmailLink.release_id == holder.id, f"release #{holder.id} went {why}")


def _by_idempotency_key(environment: Environment, user: User, key: str) -> Release | None:
    return db.session.scalar(sa.select(Release).where(
        Release.environment_id == environment.id, Release.triggered_by_id == user.id,
        Release.idempotency_key == key))
