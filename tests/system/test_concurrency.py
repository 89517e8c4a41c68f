"""Invariants of SPEC §3 across processes: several processes trigger, approve, reject
and cancel against one environment at once while a real worker runs the hooks."""
from __future__ import annotations

import multiprocessing
import random
import threading
import time

import pytest
import sqlalchemy as sa

from tests.helpers import assert_one_slot_holder_at_a_time, state, trigger, wait_for, wait_until
from webapp.extensions import db
from webapp.models import AuditEvent, Decision, Release

ENV = "/api/v1/projects/svc/environments/env"
CHANGE = [{"resourceType": "t", "resourceName": "n", "resourcePath": "p", "changeType": "CREATE"}]


def act(config: dict, role: str, token: str, stop, seed: int) -> list[tuple[str, int, str]]:
    """One process: its own app and connections, hammering the API until `stop` is set."""
    from webapp import create_app

    app = create_app(config)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(seed)
    seen: list[tuple[str, int, str]] = []
    while not stop.is_set():
        if role == "trigger":
            response = client.post(f"{ENV}/releases", json={"resources": CHANGE}, headers=headers)
            seen.append(("trigger", response.status_code, response.get_data(as_text=True)))
            time.sleep(0.05)
            continue
        wanted = "PENDING_APPROVAL" if role == "decide" else "QUEUED"
        items = client.get(f"{ENV}/releases?state={wanted}", headers=headers).json["items"]
        for item in items:
            action = rng.choice(["approve", "reject"]) if role == "decide" else "cancel"
            response = client.post(f"/api/v1/releases/{item['id']}/{action}", json={}, headers=headers)
            seen.append((action, response.status_code, response.get_data(as_text=True)))
        time.sleep(0.01)
    return seen


def test_concurrent_processes_keep_every_invariant(app, app_config, api, people, new_environment, start_worker):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    people.add("approver2", "approve_release")
    start_worker()
    roles = [("trigger", "dev"), ("trigger", "admin"), ("decide", "approver"), ("decide", "approver2"),
             ("decide", "approver"), ("cancel", "dev")]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(len(roles)) as pool:
        stop = manager.Event()
        running = pool.starmap_async(act, [(app_config, role, people.tokens[name], stop, seed)
                                           for seed, (role, name) in enumerate(roles)])
        # The traffic goes on until every kind of move has landed a few times, however long
        # that takes here (a failed process ends the wait too: its error is raised below).
        try:
            wait_for(lambda: running.ready() or every_move_landed(app), timeout=300)
        finally:
            stop.set()
        results = running.get(120)
    outcomes = [outcome for result in results for outcome in result]
    summary = sorted({(action, status) for action, status, _ in outcomes})
    assert any(action == "approve" and status == 200 for action, status, _ in outcomes), summary
    for action, status, body in outcomes:
        assert status < 500 and "database is locked" not in body, (action, status, body)
        if action == "trigger":
            assert status == 202, body
        elif status != 200:
            assert status in (403, 409) and '"error"' in body, (action, status, body)

    with app.app_context():
        pending = db.session.scalar(sa.select(sa.func.count(Release.id)).where(Release.state == "PENDING_APPROVAL"))
        holders = db.session.scalar(sa.select(sa.func.count(Release.id)).where(Release.holds_slot))
        assert pending <= 1 and holders <= 1
        decided = db.session.execute(sa.select(Release.id, Release.state).where(
            Release.state.in_(("APPROVED", "REJECTED")))).all()
        decisions = dict(db.session.execute(sa.select(Decision.release_id, sa.func.count())
                                            .group_by(Decision.release_id)).all())
        assert all(decisions.get(release_id) == 1 for release_id, _ in decided)
        approved = [release_id for release_id, state in decided if state == "APPROVED"]
        bots = dict(db.session.execute(sa.select(Release.parent_release_id, sa.func.count())
                                       .where(Release.kind == "BOT").group_by(Release.parent_release_id)).all())
        assert sorted(bots) == sorted(approved) and set(bots.values()) <= {1}
        # Replaying the audit trail: never two slot holders at once.
        assert_one_slot_holder_at_a_time(db.session.execute(
            sa.select(AuditEvent.release_id, AuditEvent.to_state)
            .where(AuditEvent.action == "state").order_by(AuditEvent.id)))


def every_move_landed(app, times: int = 2) -> bool:
    """Whether approvals, rejections and cancellations have each ended `times` releases."""
    with app.app_context():
        ended = dict(db.session.execute(sa.select(Release.state, sa.func.count()).where(
            Release.kind != "BOT", Release.state.in_(("APPROVED", "REJECTED", "CANCELLED")))
            .group_by(Release.state)).all())
        db.session.remove()
    return all(ended.get(end, 0) >= times for end in ("APPROVED", "REJECTED", "CANCELLED"))


class WaitingMove:
    """A move of the state machine, run as `username` in a thread of its own while another
    connection (`holder`) holds the environment's row lock, as a concurrent move would.
    `watcher` is a third connection to look at the database meanwhile; `outcome` holds the
    move's resulting state or its exception once `finish()` has joined the thread."""

    def __init__(self, app, username: str, move) -> None:
        from webapp import releases
        from webapp.models import Environment, User

        with app.app_context():
            environment_id = db.session.scalar(sa.select(Environment.id))
            user_id = db.session.scalar(sa.select(User.id).where(User.username == username))
            self.holder, self.watcher = db.engine.connect(), db.engine.connect()
        self.outcome: list[object] = []

        def run() -> None:
            with app.app_context():
                try:
                    self.outcome.append(move(releases.Actor(db.session.get(User, user_id), "api")).state)
                except Exception as error:  # the test reads it
                    self.outcome.append(error)

        self.holder.execute(sa.text("SELECT id FROM environments WHERE id = :id FOR NO KEY UPDATE"),
                            {"id": environment_id})
        self.thread = threading.Thread(target=run)
        self.thread.start()
        assert wait_until(lambda: waiting_for_a_lock(self.watcher) == 1, timeout=60), "the move never waited for a lock"

    def finish(self) -> list[object]:
        self.holder.rollback()  # a no-op once the test committed through it
        self.thread.join(60)
        self.holder.close()
        self.watcher.close()
        return self.outcome


@pytest.mark.postgresql
def test_a_move_locks_its_environment_before_its_release(app, api, people, new_environment, run_jobs):
    """One lock order for every move (environment, then release): a reject that dispatches the
    queue and a cancel of the release it would dispatch wait for each other, never deadlock.
    Here another transaction holds the environment's lock; the cancel must wait for it before it
    touches its release, so the release's row stays free to lock."""
    from webapp import releases

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    pending = trigger(api)
    run_jobs()
    queued = trigger(api)
    assert (state(api, pending), state(api, queued)) == ("PENDING_APPROVAL", "QUEUED")
    cancel = WaitingMove(app, "dev", lambda actor: releases.cancel(queued, actor))
    try:
        cancel.watcher.execute(sa.text("SELECT id FROM releases WHERE id = :id FOR UPDATE NOWAIT"), {"id": queued})
    except sa.exc.OperationalError as error:
        raise AssertionError("the cancel locked its release before its environment") from error
    finally:
        cancel.watcher.rollback()
        outcome = cancel.finish()
    assert outcome == ["CANCELLED"]


def waiting_for_a_lock(connection) -> int:
    """How many sessions of this database wait for a lock (its own transaction: PostgreSQL
    keeps one snapshot of pg_stat_activity per transaction)."""
    count = connection.execute(sa.text("SELECT count(*) FROM pg_stat_activity "
                                       "WHERE wait_event_type = 'Lock' AND datname = current_database()")).scalar()
    connection.rollback()
    return count


@pytest.mark.postgresql
def test_the_audit_names_the_state_a_move_left_even_when_it_moved_while_waiting(app, api, new_environment):
    """An abort judged on READY waits for the environment while the hook's result moves the release
    to IN_PROGRESS: it still aborts (both states may be aborted), and its audit row says it left
    IN_PROGRESS, the state the update met, not READY, the state the abort was loaded with."""
    from webapp import releases

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    ready = trigger(api)  # no worker runs: it holds the slot, READY
    assert state(api, ready) == "READY"
    abort = WaitingMove(app, "admin", lambda actor: releases.abort(ready, actor))
    try:  # the hook's result, committed by the transaction the abort waits for
        abort.holder.execute(sa.text("UPDATE releases SET state = 'IN_PROGRESS' WHERE id = :id"), {"id": ready})
        abort.holder.commit()
    finally:
        outcome = abort.finish()
    assert outcome == ["FAILED"]
    with app.app_context():
        left = db.session.execute(sa.select(AuditEvent.from_state).where(
            AuditEvent.release_id == ready, AuditEvent.to_state == "FAILED")).scalar_one()
    assert left == "IN_PROGRESS"


@pytest.mark.postgresql
def test_an_approval_waiting_for_the_lock_is_judged_on_the_settings_committed_meanwhile(app, api, new_environment,
                                                                                       run_jobs):
    """The triggerer approves their own release while self-approval is allowed; before the approval
    gets the environment's lock, an admin turns self-approval off. It must not count."""
    from webapp import releases

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}, allow_self_approval=True)
    pending = trigger(api, "approver")
    run_jobs()
    approve = WaitingMove(app, "approver", lambda actor: releases.approve(pending, actor))
    approve.holder.execute(sa.text("UPDATE environments SET allow_self_approval = false"))
    approve.holder.commit()
    [outcome] = approve.finish()
    assert isinstance(outcome, releases.WrongState), outcome
    assert state(api, pending) == "PENDING_APPROVAL"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Decision.id))) == 0
