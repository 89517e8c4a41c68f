"""What people decide about a waiting release: approve (the BOT release once every rule is
met), reject, cancel or withdraw; reminders while it waits; the review an emergency release
owes afterwards."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from .. import approval_rules
from ..extensions import db
from ..models import TERMINAL_STATES, Decision, Release, utcnow
from ..permissions import PermissionDenied, decide_refusal, may_cancel, require
from ..transactions import (
    SYSTEM,
    Actor,
    audit,
    begin_or_join_write,
    commit_changes,
    lock_environment,
)
from .queue import dispatch_queue, window_verdict
from .states import Unacceptable, WrongState, enqueue, get_release, move, wrong_state

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
        raise wrong_state(release, doing, "pending approval")
    return approval_rules.progress(release)


def approve(release_id: int, actor: Actor, comment: str = "") -> Release:
    """Count an approval for every rule of a pending release its giver may count for, met
    already or not (an earlier approval may stop counting while the release waits). When the
    last rule is met, the release becomes APPROVED and its BOT release takes the slot
    in the same transaction; that BOT release is returned, else the release (rules remain).
    An approval that would count for no rule is refused (WrongState)."""
    begin_or_join_write()
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
    if not move(release, "APPROVED", actor, "approve", expect=("PENDING_APPROVAL",), reason=comment or "approved"):
        db.session.rollback()
        raise wrong_state(release, "approved", "pending approval")
    verdict = window_verdict(release.environment_id, None)  # approvals can be given during a freeze
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
        enqueue("execute", bot.id)
    commit_changes()
    return bot


def reject(release_id: int, actor: Actor, comment: str = "") -> Release:
    """Reject a pending release: one rejection by anyone who could count for a rule is enough."""
    begin_or_join_write()
    release = get_release(release_id)
    _check_decider(release, actor)
    progress = _pending_progress(release, "rejected")
    if not progress.may_reject(actor.user):
        db.session.rollback()
        raise PermissionDenied(approval_rules.reject_refusal(progress))
    if not move(release, "REJECTED", actor, "reject", expect=("PENDING_APPROVAL",), reason=comment or "rejected"):
        db.session.rollback()
        raise wrong_state(release, "rejected", "pending approval")
    db.session.add(Decision(release_id=release.id, user_id=actor.user.id, decision="REJECT",
                            comment=comment, via=actor.via, digest=approval_rules.digest(release)))
    dispatch_queue(release.environment_id)
    commit_changes()
    return release


def expires_at(pending_since: datetime | None, hours: float | None) -> datetime | None:
    """When a pending release is rejected as expired (approval_timeout_hours); None: never."""
    return pending_since + timedelta(hours=hours) if pending_since is not None and hours else None


def remind(release_id: int, last: datetime | None, now: datetime) -> bool:
    """Record a reminder of a pending release, once: a compare-and-set on when it was last
    reminded, so two reconcilers never remind twice. The audit event mails those still counting."""
    begin_or_join_write()
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


def review(release_id: int, actor: Actor, comment: str) -> Release:
    """Mark a finished emergency release reviewed, once: by someone who may approve its
    environment and did not trigger it, with a comment on what was done."""
    begin_or_join_write()
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
        raise wrong_state(release, "reviewed", "finished")
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


def announce_overdue_review(release_id: int, last: datetime | None, now: datetime) -> bool:
    """Record that an emergency release's review is overdue, once per announcement: a
    compare-and-set on when it was last announced (reconcile.announce_overdue_reviews)."""
    begin_or_join_write()
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


def cancel(release_id: int, actor: Actor) -> Release:
    """Cancel a queued release, or withdraw one's own pending release."""
    begin_or_join_write()
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
        raise wrong_state(release, "cancelled", "queued or pending approval")
    # The rules above were judged on `judged`: the compare-and-set accepts exactly that state.
    # A queued release that became pending meanwhile is one only its triggerer may withdraw.
    if not move(release, "CANCELLED", actor, "cancel", expect=(judged,), reason=reason):
        now = release.state.replace("_", " ").lower()  # _move reloaded it
        db.session.rollback()
        raise WrongState(f"Release #{release_id} changed while you were cancelling it (it is {now} now); "
                         "nothing was changed. Look at it again before you retry.")
    dispatch_queue(release.environment_id)
    commit_changes()
    return release
