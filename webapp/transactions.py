"""One transaction per action: who acts, a move as compare-and-set plus its audit row,
write transactions that hold SQLite's lock from their start, and side effects after commit."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from .extensions import db
from .live import bump_version
from .models import SLOT_STATES, AuditEvent, EmailLink, Environment, Release, User, utcnow
from .notify.announce import publish, worth_announcing


@dataclass(frozen=True)
class Actor:
    """Who acts and through which door: ui, email, slack, api, cli, worker or system."""

    user: User | None
    via: str

    @property
    def name(self) -> str:
        return self.user.username if self.user is not None else self.via


SYSTEM = Actor(None, "system")
WORKER = Actor(None, "worker")


def after_commit(fn, *args: Any, first: bool = False) -> None:
    """Run fn(*args) once the current transaction commits; drop it on rollback. `first` runs
    it before the others (a release's job before announcements: an idle worker takes
    whichever job reaches Redis first, whatever the order of its queues)."""
    db.session.info.setdefault("after_commit", []).append((fn, args, first))


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # SQLAlchemy fires this for a released savepoint too: nothing is committed yet
    session.info.pop("savepoint_marks", None)
    session.info.pop("bumps_version", None)
    session.info.pop("writing", None)
    for fn, args, _first in sorted(session.info.pop("after_commit", []), key=lambda call: not call[2]):
        fn(*args)


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction) -> None:
    if transaction.nested:
        marks = session.info.setdefault("savepoint_marks", {})
        marks[id(transaction)] = len(session.info.get("after_commit", []))


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, previous) -> None:
    """A rolled-back savepoint drops only what was registered inside it; a rollback of
    the whole transaction drops everything."""
    mark = session.info.get("savepoint_marks", {}).pop(id(previous), None)
    if previous.nested and mark is not None:
        del session.info.get("after_commit", [])[mark:]
        return
    session.info.pop("after_commit", None)
    session.info.pop("bumps_version", None)
    session.info.pop("savepoint_marks", None)
    session.info.pop("writing", None)


def audit(actor: Actor, action: str, *, release: Release | None = None, environment_id: int | None = None,
          from_state: str | None = None, to_state: str | None = None, reason: str = "",
          details: dict | None = None, release_id: int | None = None) -> None:
    """Record who did what; also tells live pages, after commit, that something changed.
    A release is named by `release`, or by `release_id` with `environment_id` (no object loaded).

    The row is inserted at once, not left to the next flush: an announcement is published
    by the event's id."""
    if not db.session.info.get("bumps_version"):
        db.session.info["bumps_version"] = True
        after_commit(bump_version)
    row = {"release_id": release.id if release is not None else release_id,
           "environment_id": environment_id if release is None else release.environment_id,
           "actor_id": actor.user.id if actor.user is not None else None, "action": action,
           "from_state": from_state, "to_state": to_state, "reason": reason, "via": actor.via,
           "details": details}
    insert = sa.insert(AuditEvent).values(row)
    if worth_announcing(action, to_state, details):  # mail and webhooks (notify/mail.py), by id, after commit
        after_commit(publish, db.session.execute(insert.returning(AuditEvent.id)).scalar_one())
    else:
        db.session.execute(insert)


def move(release: Release, to_state: str, actor: Actor, *, expect: tuple[str, ...], reason: str = "",
         where: tuple = (), **values: Any) -> bool:
    """Compare-and-set `release` from one of the `expect` states to `to_state`, and on
    success write the audit event and return True. `values`: other columns to set with it.
    Which moves exist is releases/states.py's to say (TRANSITIONS); this is how one is written.

    The environment's row is locked before the release's: one order for every move, so two
    moves in one environment (a reject that dispatches the queue, a cancel of the release it
    would dispatch) wait for each other on PostgreSQL instead of deadlocking. When the move
    did not happen, `release` is reloaded, so the caller can say what it is now."""
    if to_state not in SLOT_STATES:
        values.setdefault("holds_slot", False)
        values.setdefault("finished_at", utcnow())
    lock_environment(release.environment_id)
    # Read once the lock is held: every move waits for it, so this is the state the update meets
    # (what `release` was loaded with may have moved on while this waited).
    from_state = db.session.scalar(sa.select(Release.state).where(Release.id == release.id))
    result = db.session.execute(
        sa.update(Release).where(Release.id == release.id, Release.state.in_(expect), *where)
        .values(state=to_state, **values)
        .execution_options(synchronize_session="fetch"))  # `release` reads what the row now holds
    if result.rowcount != 1:
        db.session.refresh(release)
        return False
    audit(actor, "state", release=release, from_state=from_state, to_state=to_state, reason=reason)
    return True


def lock_environment(environment_id: int) -> sa.Row:
    """Lock an environment's row for this transaction (see releases.dispatch_queue); returns
    its modes."""
    return db.session.execute(
        sa.select(Environment.parallel_releases, Environment.approval_workflow)
        .where(Environment.id == environment_id).with_for_update(key_share=True)).one()


def revoke_email_links(where, reason: str) -> int:
    """Within the caller's transaction: end the unused email links matching `where`."""
    revoke = (sa.update(EmailLink).where(where, EmailLink.used_at.is_(None), EmailLink.revoked_at.is_(None))
              .values(revoked_at=utcnow(), revoked_reason=reason))
    # no mutate: synchronize_session=None syncs nothing either (SQLAlchemy 2 reads only its four values)
    return db.session.execute(revoke.execution_options(synchronize_session=False)).rowcount  # pragma: no mutate


def database_now() -> datetime:
    """The database's clock, naive UTC, at this moment: change windows are judged by it, so a
    worker whose clock is wrong never starts a release (releases.dispatch_queue)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return db.session.scalar(sa.text("SELECT clock_timestamp() AT TIME ZONE 'UTC'"))
    return datetime.fromisoformat(db.session.scalar(sa.text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")))


def write_transaction() -> None:
    """End any read transaction and begin one that writes (on SQLite: BEGIN IMMEDIATE).

    Objects loaded earlier are expired and reload inside the new transaction, so every
    rule is judged on current rows.
    """
    if db.session.new or db.session.dirty or db.session.deleted:
        raise RuntimeError("a write transaction began over unsaved changes; they would be lost")
    db.session.rollback()
    db.session.connection(execution_options={"sqlite_write": True})
    db.session.info["writing"] = True


def begin_or_join_write() -> None:
    """The first line of every function that changes rows (the state machine's, accounts',
    groups', settings'): a write transaction of its own, or the one already open (e.g. an email
    link burnt together with its decision: then the function's commit commits both, and its
    failure rolls back both)."""
    if not db.session.info.get("writing"):
        write_transaction()


def commit_changes() -> None:
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
