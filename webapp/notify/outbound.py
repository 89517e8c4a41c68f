"""What mail and webhook deliveries share: one attempt at a time per row (claim), the
retry schedule, and jobs that leave no transaction open behind them."""
from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..transactions import commit_changes, write_transaction


def worker_job(fn: Callable) -> Callable:
    """End a notification job without an open transaction: the worker's session runs the
    next job, which must not inherit a stale read snapshot (SQLite then refuses its first
    write)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        finally:
            db.session.rollback()

    return wrapper


def claim(model, row_id: int, now: datetime) -> bool:
    """Compare-and-set a due mail or delivery to "sending": one worker tries it at a time."""
    write_transaction()
    claimed = db.session.execute(
        sa.update(model).where(model.id == row_id, model.status.in_(("pending", "retrying")),
                               sa.or_(model.next_attempt_at.is_(None), model.next_attempt_at <= now))
        .values(status="sending", claimed_at=now, attempts=model.attempts + 1)
        .execution_options(synchronize_session=False)).rowcount == 1
    commit_changes()
    return claimed


def retry_delay(failures: int) -> int | None:
    """Seconds before the next attempt after `failures` failures in a row; None: give up.

    NOTIFY_RETRY_SECONDS (default 30, 120, 480, 1920, 7680: each wait four times the last).
    """
    schedule = current_app.config["NOTIFY_RETRY_SECONDS"]
    return schedule[failures - 1] if 0 < failures <= len(schedule) else None
