"""What the worker reports, read whole (issue 17): the sentences a release's outcome carries
(its error, its audited reason, its output), the ends of a running release (abort, the
external finish) and what each refusal says; the compare-and-sets a report makes move only
the release it names, and only from the state it names."""
from __future__ import annotations

from tests.helpers import release, trigger
from tests.worker.run_path_support import HOOK_DIR, PLAIN, in_progress, moves, row
from webapp import releases
from webapp.models import Release
from webapp.releases.runs import NOTHING_RUN
from worker.queues import release_queue

WAITS = {"wait_for_external_finish": True}


def test_a_release_command_that_exits_3_fails_saying_so_and_one_that_exits_0_succeeds_saying_so(
        app, api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"}, release_command="echo nope; exit 3")
    failed = trigger(api)
    run_jobs()
    data = release(api, failed)
    assert (data["state"], data["error"]) == ("FAILED", "The release command exited 3.")
    assert moves(app, failed)[-1] == ("FAILED", "The release command exited 3.")
    api("admin").patch("/api/v1/projects/svc/environments/env", json={"release_command": "echo applied"})
    succeeded = trigger(api)
    run_jobs()
    data = release(api, succeeded)
    assert (data["state"], data["error"]) == ("SUCCEEDED", None)
    assert moves(app, succeeded)[-1] == ("SUCCEEDED", "release command exited 0")


def test_a_timed_out_apply_without_its_own_sentence_says_the_release_command_timed_out(app, api, new_environment):
    release_id = in_progress(api, new_environment, release_command="sleep 1")
    with app.app_context():
        assert releases.record_execution_result(release_id, exit_code=None, output="half\n", truncated=True,
                                                timed_out=True) == "TIMED_OUT"
    data = release(api, release_id)
    assert (data["state"], data["error"]) == ("TIMED_OUT", "The release command timed out.")
    assert data["execution"]["output"] == "half\n" and data["execution"]["truncated"] is True
    assert moves(app, release_id)[-1] == ("TIMED_OUT", "The release command timed out.")


def test_an_apply_result_for_a_release_no_longer_in_progress_changes_nothing_and_says_none(
        app, api, new_environment):
    release_id = in_progress(api, new_environment, release_command="true")
    assert api("dev").post(f"/api/v1/releases/{release_id}/abort").status_code == 200
    with app.app_context():
        assert releases.record_execution_result(release_id, exit_code=0, output="late\n", truncated=False) is None
    data = release(api, release_id)
    assert (data["state"], data["execution"]["exit_code"]) == ("FAILED", None)


def test_a_release_with_nothing_to_run_succeeds_saying_that_nothing_ran(app, api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "SUCCEEDED"
    assert data["execution"]["output"] == "No release command is set for this environment, so nothing was run.\n"
    assert moves(app, release_id)[-1] == ("SUCCEEDED", NOTHING_RUN)


def test_a_fail_moves_only_when_its_condition_holds_and_records_its_error_as_the_reason(app, api, new_environment):
    release_id = in_progress(api, new_environment, release_command="true")
    with app.app_context():
        # dispatch left heartbeat_at empty: a fail that needs a heartbeat (as "worker lost" does) does nothing
        assert releases.fail(release_id, "lost", expect=("IN_PROGRESS",),
                             where=(Release.heartbeat_at.is_not(None),)) is False
    assert release(api, release_id)["state"] == "IN_PROGRESS"
    with app.app_context():
        assert releases.fail(release_id, "the build host is gone", expect=("IN_PROGRESS",)) is True
    data = release(api, release_id)
    assert (data["state"], data["error"]) == ("FAILED", "the build host is gone")
    assert moves(app, release_id)[-1] == ("FAILED", "the build host is gone")


def test_a_heartbeat_records_liveness_and_output_of_that_release_in_that_state_only(app, api, new_environment):
    release_id = in_progress(api, new_environment, release_command="true")
    new_environment(PLAIN, name="other", approval_workflow=False, release_command="true")
    other = trigger(api, path="svc/other")
    assert row(app, release_id, "heartbeat_at") == (None,) == row(app, other, "heartbeat_at")
    with app.app_context():
        assert releases.heartbeat(release_id, "READY", exec_output="wrong state\n") is False
        assert releases.heartbeat(release_id, "IN_PROGRESS", exec_output="so far\n") is True
    beat, output = row(app, release_id, "heartbeat_at", "exec_output")
    assert beat is not None and output == "so far\n"
    assert row(app, other, "heartbeat_at", "exec_output") == (None, "")


# -- the ends of a running release: abort, and the external finish ----------------------------

def test_aborting_a_release_that_waits_for_approval_is_refused_saying_which_states_can_be(
        app, api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    run_jobs()
    response = api("dev").post(f"/api/v1/releases/{release_id}/abort")
    assert response.status_code == 409
    assert response.json["error"] == (f"Release #{release_id} is pending approval, so it cannot be aborted (only a "
                                      "release that is ready, scheduled or in progress can); nothing was changed.")
    assert release(api, release_id)["state"] == "PENDING_APPROVAL"


def test_a_release_waiting_for_an_external_finish_says_where_to_report_it_and_stops_heartbeating(
        app, api, new_environment, run_jobs):
    new_environment(PLAIN, approval_workflow=False, parallel_releases=True, **WAITS)
    first, second = trigger(api), trigger(api)
    run_jobs()
    for release_id in (first, second):
        data = release(api, release_id)
        assert data["state"] == "IN_PROGRESS"
        assert data["execution"]["output"] == (f"Waiting for an external finish (POST /api/v1/releases/{release_id}"
                                               "/finish).\n")
        started, beat = row(app, release_id, "exec_started_at", "heartbeat_at")
        assert started is not None and beat is None  # the reconciler times it out, never calls it lost


def test_an_external_finish_records_who_reported_it_and_a_failed_one_says_so(app, api, new_environment, run_jobs):
    new_environment(PLAIN, approval_workflow=False, parallel_releases=True, **WAITS)
    good, bad = trigger(api), trigger(api)
    run_jobs()
    assert api("dev").post(f"/api/v1/releases/{good}/finish", json={"result": "SUCCEEDED", "log": "ok\n"}).status_code \
        == 200
    assert api("dev").post(f"/api/v1/releases/{bad}/finish", json={"result": "FAILED"}).status_code == 200
    assert (release(api, good)["state"], release(api, good)["error"]) == ("SUCCEEDED", None)
    assert release(api, good)["execution"]["output"] == "ok\n"
    assert (release(api, bad)["state"], release(api, bad)["error"]) == ("FAILED", "reported failed by dev")
    assert moves(app, good)[-1] == ("SUCCEEDED", "finish reported by dev")
    assert moves(app, bad)[-1] == ("FAILED", "finish reported by dev")
    with app.app_context():
        releases.await_external_finish(good)  # a late duplicate of the apply job: the release has moved on
    assert release(api, good)["execution"]["output"] == "ok\n"


def test_finishing_a_release_that_is_not_in_progress_is_refused_saying_so(app, api, new_environment, run_jobs):
    new_environment(PLAIN, approval_workflow=False, **WAITS)
    release_id = trigger(api)
    run_jobs()
    assert api("dev").post(f"/api/v1/releases/{release_id}/finish", json={"result": "SUCCEEDED"}).status_code == 200
    response = api("dev").post(f"/api/v1/releases/{release_id}/finish", json={"result": "FAILED"})
    assert response.status_code == 409
    assert response.json["error"] == (f"Release #{release_id} is succeeded, so it cannot be finished (only a release "
                                      "that is in progress can); nothing was changed.")


def test_a_release_with_its_own_command_cannot_be_finished_through_the_api(app, api, new_environment):
    for name, settings in (("env", {}), ("both", {**WAITS, "release_command": "true"})):
        release_id = in_progress(api, new_environment, name=name, **settings)
        response = api("dev").post(f"/api/v1/releases/{release_id}/finish", json={"result": "SUCCEEDED"})
        assert response.status_code == 409
        assert response.json["error"] == (f"svc/{name} does not wait for an external finish, so its releases cannot "
                                          "be finished through the API.")
        assert release(api, release_id)["state"] == "IN_PROGRESS"



def test_a_hook_exit_0_with_nothing_to_run_succeeds_at_once_without_a_second_job(app, api, new_environment):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"})  # no release command, none stored
    release_id = trigger(api)
    assert row(app, release_id, "state") == ("READY",)
    with app.app_context():  # the hook's report, as the worker makes it
        assert releases.record_hook_result(release_id, exit_code=0, output="ok\n", truncated=False) == "SUCCEEDED"
        assert f"execute-{release_id}" not in release_queue().job_ids
    assert release(api, release_id)["execution"]["output"] == NOTHING_RUN + "\n"


def test_a_hook_exit_2_waits_saying_so_and_the_wait_starts_its_clock(app, api, new_environment):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)  # READY: its hook job waits in Redis; the result is reported here
    with app.app_context():
        assert releases.record_hook_result(release_id, exit_code=2, output="", truncated=False) == "PENDING_APPROVAL"
    assert moves(app, release_id)[-1] == ("PENDING_APPROVAL", "pre-release hook exited 2")
    # approval timeouts and reminders count from here
    assert row(app, release_id, "pending_since")[0] is not None


def test_a_verdict_counts_only_after_an_exit_2_not_after_a_0_turned_into_a_wait(app, api, new_environment):
    """A differing hook folder turns an exit 0 into a wait; what that hook wrote to $RELEASE_VERDICT
    is not read then (it might have been written by the branch's hook, not the hook ref's)."""
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"})
    environment_rules = api("admin").get("/api/v1/projects/svc/environments/env").json["approval_rules"]
    release_id = trigger(api)
    verdict = b'{"rules": [{"name": "raised", "group": null, "approvals": 1}]}'
    with app.app_context():
        assert releases.record_hook_result(release_id, exit_code=0, output="", truncated=False, verdict=verdict,
                                           needs_approval_reason="the hook folder differs") == "PENDING_APPROVAL"
    assert row(app, release_id, "approval_rules")[0] == environment_rules


def test_a_run_is_claimed_once_and_only_from_the_state_it_runs_in(app, api, new_environment):
    """claim_run's compare-and-set: a hook from READY, an apply from IN_PROGRESS, each once (a second
    job of the same run, or a job of a release that moved on, gets False and runs nothing)."""
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"}, release_command="true")
    ready, queued = trigger(api), trigger(api)  # the second waits behind the first
    with app.app_context():
        assert releases.claim_run(queued, "hook") is False
        assert releases.claim_run(ready, "execute") is False
        assert releases.claim_run(ready, "hook") is True
        assert releases.claim_run(ready, "hook") is False
    applying = in_progress(api, new_environment, name="direct", release_command="true")
    with app.app_context():
        assert releases.claim_run(applying, "hook") is False
        assert releases.claim_run(applying, "execute") is True
        assert releases.claim_run(applying, "execute") is False
    assert row(app, queued, "hook_started_at") == (None,) and row(app, applying, "hook_started_at") == (None,)
