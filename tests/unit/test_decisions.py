"""Approve, reject, cancel, withdraw, abort and finish: who may, and what happens."""
from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tests.helpers import processes_running, state, trigger, wait_for, wait_until, watchdog
from webapp.extensions import db
from webapp.models import AuditEvent, Decision, Environment, Release

HOOK_DIR = "svc/pre_release_hooks"
WAITS = {f"{HOOK_DIR}/pre_release_hook.sh": "echo asking; exit 2\n"}






def pending(api, run_jobs, who: str = "dev") -> int:
    release_id = trigger(api, who)
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    return release_id


def test_member_without_permission_gets_403_and_nothing_changes(api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    response = api("member").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert response.status_code == 403
    assert "Release Approval/Reject" in response.json["error"]
    assert api("member").post(f"/api/v1/releases/{release_id}/reject", json={}).status_code == 403
    assert state(api, release_id) == "PENDING_APPROVAL"


def test_a_grant_scoped_to_the_environment_is_enough_and_another_scope_is_not(app, api, people, new_environment,
                                                                          run_jobs):
    new_environment(WAITS)
    new_environment(WAITS, name="other")
    with app.app_context():
        env, other = (db.session.scalar(sa.select(Environment).where(Environment.name == n)) for n in ("env", "other"))
        people.add("scoped", "approve_release", environment=env)
        people.add("elsewhere", "approve_release", environment=other)
    release_id = pending(api, run_jobs)
    for action in ("approve", "reject"):
        response = api("elsewhere").post(f"/api/v1/releases/{release_id}/{action}", json={})
        assert response.status_code == 403 and "Release Approval/Reject" in response.json["error"]
    assert state(api, release_id) == "PENDING_APPROVAL"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Decision.id))) == 0
    response = api("scoped").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert response.status_code == 200, response.json
    approved = api("member").get(f"/api/v1/releases/{release_id}").json
    assert approved["state"] == "APPROVED"
    assert [d["by"] for d in approved["decisions"]] == ["scoped"], approved["decisions"]
    assert state(api, approved["bot_release_id"]) == "IN_PROGRESS"


def test_nobody_approves_their_own_release_admins_included(api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, who="admin")
    response = api("admin").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert response.status_code == 403
    assert "You triggered this release" in response.json["error"]
    api("admin").patch("/api/v1/projects/svc/environments/env", json={"allow_self_approval": True})
    assert api("admin").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200


def test_ten_concurrent_approvals_give_one_decision_and_one_bot_release(app, api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    statuses = []
    barrier = threading.Barrier(10)

    def approve():
        client = app.test_client()
        barrier.wait()
        response = client.post(f"/api/v1/releases/{release_id}/approve", json={"comment": "go"},
                               headers=api("approver").headers)
        statuses.append((response.status_code, response.json))

    threads = [threading.Thread(target=approve) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(code for code, _ in statuses)
    assert codes == [200] + [409] * 9, statuses
    assert all("pending approval" in body["error"] for code, body in statuses if code == 409)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Decision.id))) == 1
        assert db.session.scalar(sa.select(sa.func.count(Release.id)).where(Release.kind == "BOT")) == 1


def test_approving_something_not_pending_is_a_409(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"})
    release_id = trigger(api)
    run_jobs()
    response = api("approver").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert response.status_code == 409
    assert "succeeded" in response.json["error"]


def test_triggerer_cancels_own_queued_release_but_not_someone_elses(api, new_environment, run_jobs):
    new_environment(WAITS)
    pending(api, run_jobs)
    mine = trigger(api, who="approver")
    theirs = trigger(api, who="approver")
    assert api("member").post(f"/api/v1/releases/{theirs}/cancel").status_code == 403
    assert api("approver").post(f"/api/v1/releases/{mine}/cancel").json["state"] == "CANCELLED"
    assert api("dev").post(f"/api/v1/releases/{theirs}/cancel").json["state"] == "CANCELLED"  # has cancel_release


def test_withdraw_is_for_the_triggerer_and_frees_the_slot(api, new_environment, run_jobs):
    new_environment(WAITS)
    first = pending(api, run_jobs)
    second = trigger(api)
    response = api("admin").post(f"/api/v1/releases/{first}/cancel")  # even cancel_release cannot withdraw
    assert response.status_code == 403 and "withdraw" in response.json["error"]
    assert api("dev").post(f"/api/v1/releases/{first}/cancel").json["state"] == "CANCELLED"
    run_jobs()
    assert state(api, second) == "PENDING_APPROVAL"


def test_abort_kills_a_running_release_command(app, api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"},
                    release_command="setsid sleep 4242.41 & sleep 4242.41")
    release_id = trigger(api)
    responses = []

    def abort_once_running():
        wait_for(lambda: len(processes_running("sleep 4242.41")) >= 2)
        responses.append(api("dev").post(f"/api/v1/releases/{release_id}/abort"))

    aborter = threading.Thread(target=abort_once_running)
    aborter.start()
    with watchdog("sleep 4242.41"):  # an abort that kills nothing fails the test instead of hanging it
        run_jobs()  # the worker runs here, in the main thread, as it does in production
    aborter.join()
    assert responses[0].status_code == 200
    assert responses[0].json["state"] == "FAILED" and responses[0].json["error"] == "aborted by dev"
    assert wait_until(lambda: processes_running("sleep 4242.41") == [], timeout=30)
    assert api("member").post(f"/api/v1/releases/{release_id}/abort").status_code == 403


@pytest.mark.parametrize("door", ["api", "page"])
def test_aborting_a_ready_release_fails_it_frees_the_slot_and_dispatches_the_next(app, api, web, new_environment,
                                                                                  run_jobs, door):
    """SPEC §3: READY ──abort──> FAILED ("aborted by …"); leaving the slot hands it to the oldest
    queued release at once. The aborted release's hook job, still queued, then does nothing."""
    new_environment(WAITS)
    ready = trigger(api)  # holds the slot; its hook job is queued, not run
    queued = [trigger(api), trigger(api)]
    assert state(api, ready) == "READY" and [state(api, i) for i in queued] == ["QUEUED"] * 2
    if door == "api":
        response = api("dev").post(f"/api/v1/releases/{ready}/abort")
        assert response.status_code == 200, response.json
    else:
        browser = web("dev")
        response = browser.post(f"/releases/{ready}/abort", data={"csrf_token": browser.csrf})
        assert response.status_code == 303 and response.location.endswith(f"/releases/{ready}")
    aborted = api("member").get(f"/api/v1/releases/{ready}").json
    assert aborted["state"] == "FAILED" and aborted["error"] == "aborted by dev"
    assert [state(api, i) for i in queued] == ["READY", "QUEUED"]  # before any job has run
    with app.app_context():
        assert db.session.scalars(sa.select(Release.id).where(Release.holds_slot)).all() == [queued[0]]
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.release_id == ready,
                                                              AuditEvent.to_state == "FAILED"))
        assert (event.from_state, event.reason, event.via) == ("READY", "aborted by dev",
                                                              "api" if door == "api" else "ui")
    run_jobs()
    assert [state(api, i) for i in (ready, *queued)] == ["FAILED", "PENDING_APPROVAL", "QUEUED"]
    assert api("member").get(f"/api/v1/releases/{ready}").json["hook"]["exit_code"] is None  # it never ran


def test_external_finish_keeps_the_slot_until_reported(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"}, wait_for_external_finish=True)
    first = trigger(api)
    second = trigger(api)
    run_jobs()
    assert state(api, first) == "IN_PROGRESS" and state(api, second) == "QUEUED"
    assert api("member").post(f"/api/v1/releases/{first}/finish", json={"result": "SUCCEEDED"}).status_code == 403
    bad = api("dev").post(f"/api/v1/releases/{first}/finish", json={"result": "MAYBE"})
    assert bad.status_code == 422
    response = api("dev").post(f"/api/v1/releases/{first}/finish", json={"result": "SUCCEEDED", "log": "deployed"})
    assert response.status_code == 200
    assert response.json["state"] == "SUCCEEDED" and response.json["execution"]["output"] == "deployed"
    run_jobs()
    assert state(api, second) == "IN_PROGRESS"


def test_audit_trail_records_every_step_in_order(app, api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    api("approver").post(f"/api/v1/releases/{release_id}/reject", json={"comment": "not today"})
    events = api("member").get(f"/api/v1/releases/{release_id}/events").json["items"]
    assert [(e["from"], e["to"]) for e in events] == [
        (None, "QUEUED"), ("QUEUED", "READY"), ("READY", "PENDING_APPROVAL"), ("PENDING_APPROVAL", "REJECTED")]
    assert events[-1]["by"] == "approver" and events[-1]["via"] == "api" and events[-1]["reason"] == "not today"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id)).where(
            AuditEvent.release_id == release_id)) == 4


def test_cancel_acts_only_on_the_state_it_judged(app, api, new_environment, monkeypatch):
    """A release read as queued that became pending before the UPDATE (another transaction
    committed in between, as PostgreSQL's read committed allows) is not withdrawn by someone
    who may only cancel queued releases. The change is made deterministically between the
    read and the compare-and-set, so this holds on SQLite and PostgreSQL alike."""
    from webapp import releases
    from webapp.models import User
    from webapp.transactions import Actor

    new_environment(WAITS)
    trigger(api, "approver")  # takes the slot (its hook never runs here)
    queued = trigger(api, "approver")
    read_release = releases.get_release

    def read_then_changed_underneath(release_id: int) -> Release:
        release = read_release(release_id)
        db.session.execute(sa.update(Release.__table__).where(Release.__table__.c.id == release_id)
                           .values(state="PENDING_APPROVAL"))
        return release

    monkeypatch.setattr(releases.decisions, "get_release", read_then_changed_underneath)  # cancel() reads it there
    with app.app_context():
        dev = db.session.scalar(sa.select(User).where(User.username == "dev"))  # cancel_release, not the triggerer
        with pytest.raises(releases.WrongState, match="changed"):
            releases.cancel(queued, Actor(dev, "api"))
        monkeypatch.undo()
        assert releases.get_release(queued).state == "QUEUED"
        assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id)).where(
            AuditEvent.release_id == queued, AuditEvent.to_state == "CANCELLED")) == 0
