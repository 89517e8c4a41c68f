"""Repairs what lost workers, lost queue entries and passing time leave behind.

Run periodically by the worker (one reconciler at a time, under a Redis lock), which
also prunes old output and delivery logs now and then (retention.py). Every
repair goes through the state machine's compare-and-set, so running it twice, or
from two hosts at once, changes nothing more.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from . import metrics, releases, retention
from .extensions import db
from .models import TERMINAL_STATES, Environment, Release, utcnow
from .releases import SYSTEM


def reconcile(now: datetime | None = None) -> dict[str, list[int]]:
    now = now or utcnow()
    report = {
        "worker_lost": mark_lost_runs(now),
        "timed_out": time_out_external_finishes(now),
        "expired": expire_pending(now),
        "reminded": remind_pending(now),
        "reviews_overdue": announce_overdue_reviews(now),
        "requeued": requeue_lost_jobs(now),
    }
    metrics.count_repairs(report)
    redispatch_queues()
    db.session.rollback()
    retention.prune_if_due(now)  # at most hourly, among all workers
    return report


def _ids(query) -> list[tuple]:
    rows = db.session.execute(query).all()
    db.session.rollback()  # no transaction held while we act on them one by one
    return rows


def mark_lost_runs(now: datetime) -> list[int]:
    """A hook or apply whose heartbeat stopped is FAILED ("worker lost"), never run again."""
    cutoff = now - timedelta(seconds=current_app.config["WORKER_LOST_SECONDS"])
    stale = (Release.heartbeat_at.is_not(None), Release.heartbeat_at < cutoff)
    running = sa.or_(sa.and_(Release.state == "READY", Release.hook_started_at.is_not(None)),
                     sa.and_(Release.state == "IN_PROGRESS", Release.exec_started_at.is_not(None)))
    lost = []
    for (release_id,) in _ids(sa.select(Release.id).where(running, *stale)):
        message = "worker lost: no heartbeat from the worker running this release; it was not run again"
        if releases.fail(release_id, message, SYSTEM, expect=("READY", "IN_PROGRESS"), where=stale):
            lost.append(release_id)
    return lost


def time_out_external_finishes(now: datetime) -> list[int]:
    """A release waiting for `/finish` past its release timeout ends TIMED_OUT."""
    rows = _ids(sa.select(Release.id, Release.exec_started_at, Environment.release_timeout_seconds)
                .join(Environment, Release.environment_id == Environment.id)
                .where(Release.state == "IN_PROGRESS", Release.exec_started_at.is_not(None),
                       Release.heartbeat_at.is_(None)))
    timed_out = []
    for release_id, started, seconds in rows:
        if started + timedelta(seconds=seconds) <= now and releases.fail(
                release_id, f"No finish was reported within the release timeout ({seconds} s).", SYSTEM,
                expect=("IN_PROGRESS",), state="TIMED_OUT", where=(Release.heartbeat_at.is_(None),)):
            timed_out.append(release_id)
    return timed_out


def expire_pending(now: datetime) -> list[int]:
    """Pending releases past their environment's approval timeout are REJECTED ("expired")."""
    rows = _ids(sa.select(Release.id, Release.pending_since, Environment.approval_timeout_hours)
                .join(Environment, Release.environment_id == Environment.id)
                .where(Release.state == "PENDING_APPROVAL", Environment.approval_timeout_hours.is_not(None)))
    expired = []
    for release_id, since, hours in rows:
        due = releases.expires_at(since, hours)
        if due is not None and due <= now and releases.fail(
                release_id, f"expired: no decision within {hours:g} hours", SYSTEM,
                expect=("PENDING_APPROVAL",), state="REJECTED"):
            expired.append(release_id)
    return expired


def remind_pending(now: datetime) -> list[int]:
    """Pending releases that waited their environment's reminder_hours since they began waiting
    (or since the last reminder) re-ask the people whose approval would still count, once each
    interval."""
    rows = _ids(sa.select(Release.id, Release.pending_since, Release.reminded_at, Environment.reminder_hours)
                .join(Environment, Release.environment_id == Environment.id)
                .where(Release.state == "PENDING_APPROVAL", Environment.reminder_hours.is_not(None)))
    reminded = []
    for release_id, since, last, hours in rows:
        start = last or since
        if start is not None and start + timedelta(hours=hours) <= now and releases.remind(release_id, last, now):
            reminded.append(release_id)
    return reminded


REANNOUNCE_OVERDUE = timedelta(days=1)


def announce_overdue_reviews(now: datetime) -> list[int]:
    """Emergency releases whose review is overdue are announced, and again every day until
    someone reviews them: once finished, since only then can they be reviewed."""
    rows = _ids(sa.select(Release.id, Release.review_announced_at)
                .where(Release.break_glass_reason.is_not(None), Release.reviewed_at.is_(None),
                       Release.review_due_at <= now, Release.state.in_(TERMINAL_STATES)))
    return [release_id for release_id, last in rows
            if (last is None or last + REANNOUNCE_OVERDUE <= now)
            and releases.announce_overdue_review(release_id, last, now)]


def requeue_lost_jobs(now: datetime, grace_seconds: int = 10) -> list[int]:
    """Slot holders whose job never started (Redis lost it) are queued again."""
    from worker.queues import enqueue_release_job

    settled = now - timedelta(seconds=grace_seconds)
    rows = _ids(sa.select(Release.id, Release.state).where(
        Release.started_at < settled,
        sa.or_(sa.and_(Release.state == "READY", Release.hook_started_at.is_(None)),
               sa.and_(Release.state == "IN_PROGRESS", Release.exec_started_at.is_(None)))))
    return [release_id for release_id, state in rows
            if enqueue_release_job("hook" if state == "READY" else "execute", release_id, only_if_missing=True)]


def redispatch_queues() -> None:
    """Environments with queued or scheduled releases get a dispatch: it does nothing while the
    slot is held, and starts what a change window lets start now (by the database's clock)."""
    waiting = sa.select(Release.environment_id).where(Release.state.in_(("QUEUED", "SCHEDULED"))).distinct()
    for (environment_id,) in _ids(waiting):
        releases.dispatch(environment_id)
