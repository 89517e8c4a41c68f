"""Old data stays bounded: the hook and apply output of long-finished releases, and the
logs of sent mail, webhook deliveries and spent email links, are pruned in small batches.

The release rows, their decisions and the audit trail are never pruned: they are the
record of who approved what. The reconciler calls `prune_if_due` every round; a Redis key
lets one worker among all of them prune, at most once per PERIOD_SECONDS.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from redis import Redis

from .extensions import db, redis_connection
from .models import TERMINAL_STATES, EmailLink, OutgoingMail, Release, WebhookDelivery, utcnow
from .transactions import commit_changes, write_transaction

log = logging.getLogger(__name__)

PERIOD_SECONDS = 3600
BATCH_SIZE = 500  # rows per statement: each write transaction holds SQLite's lock only briefly
MAX_BATCHES = 20  # per kind of row and round; a big first run carries on in the next rounds
GUARD_KEY = "releasegate:retention:guard"
CURSOR_KEY = "releasegate:retention:output-cursor"  # the last finished release already looked at
NOTE_PREFIX = "[Output removed "
NOTE = NOTE_PREFIX + "{days} days after the release finished (OUTPUT_RETENTION_DAYS).]"
MAIL_DONE = ("sent", "outbox", "skipped", "failed")
DELIVERY_DONE = ("succeeded", "failed")


@dataclass
class Pruned:
    """What one round removed; `more` when it stopped at MAX_BATCHES with rows left."""

    outputs: int = 0  # hook or apply outputs replaced by the note
    links: int = 0
    mails: int = 0
    deliveries: int = 0
    more: bool = False


def prune_if_due(now: datetime | None = None) -> Pruned | None:
    """Prune unless some worker did within PERIOD_SECONDS; None when it was not due.

    Never raises: retention must not stop the reconciler's repairs.
    """
    try:
        redis = redis_connection()
        if not redis.set(GUARD_KEY, utcnow().isoformat(), nx=True, ex=PERIOD_SECONDS):
            return None
        pruned = prune(now, redis=redis, batch_size=BATCH_SIZE, max_batches=MAX_BATCHES)
        if pruned.more:
            redis.delete(GUARD_KEY)  # the next reconciler round carries on
    except Exception:
        db.session.rollback()
        log.exception("pruning old data failed")
        return None
    if any(asdict(pruned).values()):
        log.info("retention: %s", asdict(pruned))
    return pruned


def prune(now: datetime | None = None, *, redis: Redis | None = None, batch_size: int = BATCH_SIZE,
          max_batches: int = MAX_BATCHES) -> Pruned:
    """One round of pruning, each kind of row at most `max_batches` statements of `batch_size` rows."""
    config = current_app.config
    now = now or utcnow()
    pruned = Pruned()
    limits = {"batch_size": batch_size, "max_batches": max_batches}
    output_days = config["OUTPUT_RETENTION_DAYS"]
    if output_days > 0:
        pruned.outputs, more = prune_release_output(now, output_days, redis or redis_connection(), **limits)
        pruned.more |= more
    notify_days = config["NOTIFY_RETENTION_DAYS"]
    if notify_days > 0:
        cutoff = now - timedelta(days=notify_days)
        # Links first: deleting a mail sets its links' mail_id to NULL, one more write each.
        for field, model, where in (
                ("links", EmailLink, (EmailLink.expires_at < cutoff,)),
                ("mails", OutgoingMail, (OutgoingMail.status.in_(MAIL_DONE), OutgoingMail.created_at < cutoff)),
                ("deliveries", WebhookDelivery, (
                    WebhookDelivery.status.in_(DELIVERY_DONE),
                    sa.func.coalesce(WebhookDelivery.last_attempt_at, WebhookDelivery.created_at) < cutoff))):
            count, more = delete_in_batches(model, where, **limits)
            setattr(pruned, field, count)
            pruned.more |= more
    return pruned


def prune_release_output(now: datetime, days: int, redis: Redis, *, batch_size: int = BATCH_SIZE,
                         max_batches: int = MAX_BATCHES) -> tuple[int, bool]:
    """Replace the hook and apply output of releases finished more than `days` ago by a note.

    Walks finished releases by (finished_at, id) from a cursor kept in Redis, so a round reads
    only what finished since the last one, never the whole history again. Returns (outputs
    replaced, whether rows were left for the next round).
    """
    cutoff = now - timedelta(days=days)
    note = NOTE.format(days=days)
    cursor = _read_cursor(redis)
    replaced = 0
    for _ in range(max_batches):
        query = sa.select(Release.finished_at, Release.id).where(Release.finished_at < cutoff)
        if cursor is not None:
            query = query.where(sa.tuple_(Release.finished_at, Release.id) > sa.tuple_(*cursor))
        rows = db.session.execute(query.order_by(Release.finished_at, Release.id).limit(batch_size)).all()
        db.session.rollback()  # no read snapshot held into the write
        if not rows:
            return replaced, False
        ids = [row.id for row in rows]
        write_transaction()
        for column in (Release.hook_output, Release.exec_output):
            replaced += db.session.execute(
                sa.update(Release)
                .where(Release.id.in_(ids), Release.state.in_(TERMINAL_STATES), Release.finished_at < cutoff,
                       column != "", sa.not_(column.startswith(NOTE_PREFIX, autoescape=True)))
                .values({column: note}).execution_options(synchronize_session=False)).rowcount
        commit_changes()
        cursor = (rows[-1].finished_at, rows[-1].id)
        redis.set(CURSOR_KEY, f"{cursor[0].isoformat()}|{cursor[1]}")
        if len(rows) < batch_size:
            return replaced, False
    return replaced, True


def _read_cursor(redis: Redis) -> tuple[datetime, int] | None:
    stored = redis.get(CURSOR_KEY)
    if not stored:
        return None  # first run, or Redis lost it: walk from the start (already pruned rows stay as they are)
    try:
        finished_at, release_id = stored.decode().split("|")
        return datetime.fromisoformat(finished_at), int(release_id)
    except ValueError:
        log.warning("ignoring an unreadable retention cursor %r", stored)
        return None


def delete_in_batches(model, where: tuple, *, batch_size: int = BATCH_SIZE,
                      max_batches: int = MAX_BATCHES) -> tuple[int, bool]:
    """Delete rows matching `where`, oldest first, `batch_size` per short write transaction.

    The ids are chosen in a read transaction and the delete checks `where` again, so the
    write lock is held for the delete alone. Returns (rows deleted, whether rows were left).
    """
    deleted = 0
    for _ in range(max_batches):
        ids = list(db.session.scalars(sa.select(model.id).where(*where).order_by(model.id).limit(batch_size)))
        db.session.rollback()
        if not ids:
            return deleted, False
        write_transaction()
        deleted += db.session.execute(sa.delete(model).where(model.id.in_(ids), *where)
                                      .execution_options(synchronize_session=False)).rowcount
        commit_changes()
        if len(ids) < batch_size:
            return deleted, False
    return deleted, True
