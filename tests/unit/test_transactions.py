"""A move is a compare-and-set with its audit row; write transactions read rows afresh and hold the
write lock from their start; side effects run after commit, and only for what was committed."""
from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest
import sqlalchemy as sa

from tests.helpers import trigger
from webapp.extensions import db
from webapp.live import VERSION_KEY, redis_connection
from webapp.models import AuditEvent, EmailLink, Environment, Group, Release, User
from webapp.notify import email_links
from webapp.transactions import (
    SYSTEM,
    WORKER,
    Actor,
    after_commit,
    audit,
    begin_or_join_write,
    commit_changes,
    move,
    revoke_email_links,
)
from worker.queues import notify_queue


def test_a_rolled_back_savepoint_drops_only_its_own_side_effects(app):
    ran = []
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        after_commit(ran.append, "outer")
        try:
            with db.session.begin_nested():
                after_commit(ran.append, "inside savepoint")
                raise RuntimeError("the savepoint fails")
        except RuntimeError:
            pass
        after_commit(ran.append, "after savepoint")
        db.session.commit()
    assert ran == ["outer", "after savepoint"]


def test_a_rolled_back_transaction_runs_nothing(app):
    ran = []
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        after_commit(ran.append, "never")
        db.session.rollback()
        db.session.commit()
    assert ran == []


def test_a_released_savepoint_runs_nothing_until_the_transaction_commits(app):
    ran = []
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        after_commit(ran.append, "before savepoint")
        with db.session.begin_nested():
            after_commit(ran.append, "inside savepoint")
        assert ran == []  # a dispatch's savepoint must not announce what is not committed yet
        db.session.commit()
    assert ran == ["before savepoint", "inside savepoint"]


def test_side_effects_marked_first_run_before_the_others_in_order(app):
    ran = []
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        after_commit(ran.append, "announce")
        after_commit(ran.append, "job 1", first=True)
        after_commit(ran.append, "version")
        after_commit(ran.append, "job 2", first=True)
        db.session.commit()
    assert ran == ["job 1", "job 2", "announce", "version"]


# -- the compare-and-set of a move, and its audit row ----------------------------------------------

def _two_releases(api, new_environment) -> tuple[int, int]:
    """The first READY and holding the slot, the second QUEUED behind it."""
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    return trigger(api, "approver"), trigger(api, "approver")


def _behind_its_back(release_id: int, **values) -> None:
    """Change a release's row without telling the session's object (as another transaction would)."""
    db.session.execute(sa.update(Release).where(Release.id == release_id).values(**values)
                       .execution_options(synchronize_session=False))


def _rows() -> list[tuple]:
    return db.session.execute(sa.select(Release.id, Release.state, Release.holds_slot).order_by(Release.id)).all()


def _last_move(release_id: int) -> tuple:
    return db.session.execute(sa.select(
        AuditEvent.release_id, AuditEvent.environment_id, AuditEvent.actor_id, AuditEvent.action,
        AuditEvent.from_state, AuditEvent.to_state, AuditEvent.reason, AuditEvent.via)
        .where(AuditEvent.release_id == release_id, AuditEvent.action == "state")
        .order_by(AuditEvent.id.desc()).limit(1)).one()


def test_a_move_from_a_state_it_does_not_expect_changes_nothing_and_reloads_the_release(app, api, new_environment):
    first, second = _two_releases(api, new_environment)
    with app.app_context():
        begin_or_join_write()
        release = db.session.get(Release, second)
        _behind_its_back(second, state="CANCELLED")  # the object still says QUEUED
        assert release.state == "QUEUED"
        assert move(release, "FAILED", WORKER, expect=("QUEUED",)) is False
        assert release.state == "CANCELLED"  # reloaded: the caller can say what it is now
        commit_changes()
        assert _rows() == [(first, "READY", True), (second, "CANCELLED", False)]
        assert _last_move(second)[5] == "QUEUED"  # the move did not happen, so it is not audited


def test_a_move_sets_only_its_own_release_and_audits_the_state_its_row_held(app, api, new_environment, people):
    first, second = _two_releases(api, new_environment)
    with app.app_context():
        actor = Actor(db.session.get(User, people.add("mover", "cancel_release")), "api")
        notify_queue().empty()
        begin_or_join_write()
        release = db.session.get(Release, first)
        _behind_its_back(first, state="IN_PROGRESS")  # the object still says READY
        expect = ("QUEUED", "READY", "IN_PROGRESS")  # the other release's state too: only this one moves
        assert move(release, "FAILED", actor, expect=expect, reason="the mover said so") is True
        # the object reads what the row now holds, the columns of leaving the slot states included
        assert (release.state, release.holds_slot, release.finished_at is not None) == ("FAILED", False, True)
        commit_changes()
        assert _rows() == [(first, "FAILED", False), (second, "QUEUED", False)]
        assert db.session.get(Release, second).finished_at is None
        assert _last_move(first) == (first, release.environment_id, actor.user.id, "state", "IN_PROGRESS", "FAILED",
                                     "the mover said so", "api")
        failed = db.session.scalar(sa.select(sa.func.max(AuditEvent.id)))
        assert notify_queue().job_ids == [f"announce-{failed}"]  # a failed release is told, after commit


def test_a_move_between_slot_states_keeps_the_slot_and_sets_no_finish(app, api, new_environment):
    first, second = _two_releases(api, new_environment)
    with app.app_context():
        begin_or_join_write()
        assert move(db.session.get(Release, first), "IN_PROGRESS", WORKER, expect=("READY",)) is True
        commit_changes()
        assert _rows() == [(first, "IN_PROGRESS", True), (second, "QUEUED", False)]
        found = db.session.get(Release, first)
        assert found.finished_at is None
        assert _last_move(first) == (first, found.environment_id, None, "state", "READY", "IN_PROGRESS", "", "worker")


def test_a_move_also_requires_its_where_conditions(app, api, new_environment):
    first, second = _two_releases(api, new_environment)
    with app.app_context():
        begin_or_join_write()
        release = db.session.get(Release, second)
        assert move(release, "CANCELLED", WORKER, expect=("QUEUED",), where=(Release.holds_slot.is_(True),)) is False
        assert move(release, "CANCELLED", WORKER, expect=("QUEUED",), where=(Release.holds_slot.is_(False),)) is True
        commit_changes()
        assert _rows() == [(first, "READY", True), (second, "CANCELLED", False)]


# -- write transactions ------------------------------------------------------------------------------

def test_a_write_transaction_refuses_to_begin_over_any_unsaved_change(app, people):
    people.add("someone")
    with app.app_context():
        for unsaved in ("new", "dirty", "deleted"):
            user = db.session.scalar(sa.select(User).where(User.username == "someone"))
            if unsaved == "new":
                db.session.add(Group(name="unsaved"))
            elif unsaved == "dirty":
                user.email = "changed@example.com"
            else:
                db.session.delete(user)
            with pytest.raises(RuntimeError) as refused:
                begin_or_join_write()
            assert str(refused.value) == "a write transaction began over unsaved changes; they would be lost"
            db.session.rollback()


def test_a_write_transaction_reads_rows_afresh_and_later_calls_join_it(app, people):
    people.add("someone")
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == "someone"))
        assert user.email == "someone@example.com"
        with db.engine.begin() as other:  # another writer commits in between
            other.execute(sa.update(User).where(User.id == user.id).values(email="new@example.com"))
        begin_or_join_write()
        assert user.email == "new@example.com"  # judged on the current row, not the one loaded
        db.session.add(Group(name="joined"))
        db.session.flush()
        begin_or_join_write()  # joins: what the transaction wrote so far stays
        commit_changes()
        assert db.session.scalars(sa.select(Group.name)).all() == ["joined"]


def test_a_write_transaction_holds_the_write_lock_from_its_start(app):
    with app.app_context():
        begin_or_join_write()
        if db.engine.dialect.name != "sqlite":  # PostgreSQL locks the rows as they are written
            assert db.session().in_transaction()
            return
        other = sqlite3.connect(db.engine.url.database, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("BEGIN IMMEDIATE")
            db.session.rollback()
            other.execute("BEGIN IMMEDIATE")  # the lock goes with the transaction
            other.execute("ROLLBACK")
        finally:
            other.close()


# -- the audit row and what it sets off after commit ----------------------------------------------------

def test_audit_rows_bump_the_live_version_once_per_commit_and_say_no_reason_unless_given(app, api, new_environment):
    first, _second = _two_releases(api, new_environment)
    with app.app_context():
        redis = redis_connection()
        before = int(redis.get(VERSION_KEY) or 0)
        begin_or_join_write()
        audit(SYSTEM, "note", release_id=first, environment_id=None)
        audit(SYSTEM, "note", release_id=first, environment_id=None)
        commit_changes()
        assert int(redis.get(VERSION_KEY)) == before + 1
        rows = db.session.execute(sa.select(AuditEvent.release_id, AuditEvent.reason, AuditEvent.via)
                                  .where(AuditEvent.action == "note")).all()
        assert rows == [(first, "", "system"), (first, "", "system")]
        begin_or_join_write()
        audit(SYSTEM, "note", release_id=first)
        commit_changes()
        assert int(redis.get(VERSION_KEY)) == before + 2  # the next transaction bumps it again


def test_a_settings_change_that_weakens_the_gate_is_announced_by_its_id_after_commit(app, api, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    with app.app_context():
        environment_id = db.session.scalar(sa.select(Environment.id))
        queue = notify_queue()
        queue.empty()
        begin_or_join_write()
        audit(SYSTEM, "settings", environment_id=environment_id, details={"weakens_gate": True})
        audit(SYSTEM, "settings", environment_id=environment_id, details={"weakens_gate": False})
        assert queue.job_ids == []  # nothing is told before the commit
        commit_changes()
        weakening, _not = db.session.scalars(sa.select(AuditEvent.id).where(AuditEvent.action == "settings")
                                             .order_by(AuditEvent.id.desc()).limit(2)).all()[::-1]
        assert [(job.id, job.args) for job in queue.jobs] == [(f"announce-{weakening}", [weakening])]


def test_revoking_email_links_ends_only_the_unused_unrevoked_ones_it_names(app, api, new_environment, people):
    first, second = _two_releases(api, new_environment)
    with app.app_context():
        approver = db.session.scalar(sa.select(User.id).where(User.username == "approver"))
        for release_id in (first, first, first, second):
            email_links.issue(approver, release_id, "approve")
        db.session.commit()
        used, revoked, fresh, elsewhere = db.session.scalars(sa.select(EmailLink).order_by(EmailLink.id)).all()
        used.used_at = revoked.revoked_at = datetime(2026, 1, 1)
        revoked.revoked_reason = "revoked before"
        db.session.commit()
        begin_or_join_write()
        assert revoke_email_links(EmailLink.release_id == first, "the release was cancelled") == 1
        commit_changes()
        rows = db.session.execute(sa.select(EmailLink.id, EmailLink.revoked_at.is_not(None), EmailLink.revoked_reason)
                                  .order_by(EmailLink.id)).all()
        assert rows == [(used.id, False, None), (revoked.id, True, "revoked before"),
                        (fresh.id, True, "the release was cancelled"), (elsewhere.id, False, None)]
