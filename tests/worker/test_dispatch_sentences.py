"""Into the queue and out of it, read whole (issue 17): why dispatch gave a release the slot
(the audited reason of each way in), first come first served, the emergency release's reason
and its limits, the refusals of a trigger, and what an Idempotency-Key matches."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from tests.helpers import git, release, state, trigger
from tests.worker.run_path_support import HOOK_DIR, PLAIN, moves, row
from tests.worker.windows_and_break_glass_support import (  # noqa: F401 (emergencies: a fixture)
    API_PROD,
    API_QA,
    QA,
    REASON,
    closed_now,
    emergencies,
    emergency,
    environment_id,
    freeze,
    patch,
    started_outside_its_window,
)
from webapp import releases
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, Release, User
from webapp.transactions import Actor, begin_or_join_write

TOO_SHORT_OR_LONG = ("An emergency release needs a reason of 10 to 2,000 characters, saying what is broken and why "
                     "it cannot wait: it is reviewed afterwards.")


def test_with_the_approval_workflow_off_a_release_takes_the_slot_saying_so_and_starts_now(app, api, new_environment):
    new_environment(PLAIN, approval_workflow=False, release_command="true")
    release_id = trigger(api)
    assert moves(app, release_id) == [("QUEUED", "triggered"),
                                      ("IN_PROGRESS", "took the slot; approval workflow is off")]
    assert row(app, release_id, "started_at")[0] is not None


def test_with_the_approval_workflow_on_the_hook_runs_first_and_the_release_keeps_its_start(app, api, new_environment,
                                                                                         run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"}, release_command="true")
    release_id = trigger(api)
    assert moves(app, release_id) == [("QUEUED", "triggered"), ("READY", "took the slot; running the pre-release hook")]
    (started,) = row(app, release_id, "started_at")
    run_jobs()
    assert moves(app, release_id)[2:] == [("IN_PROGRESS", "pre-release hook exited 0"),
                                         ("SUCCEEDED", "release command exited 0")]
    assert row(app, release_id, "started_at") == (started,)  # started when it took the slot, not when it applied


def test_a_trigger_pins_a_commit_only_when_the_ref_is_one_and_audits_itself_as_a_state_move(app, api, new_environment):
    """A branch is read when the release runs (and pinned then); a full SHA is the commit itself."""
    repo = new_environment(PLAIN, approval_workflow=False, parallel_releases=True)
    sha = git(repo, "rev-parse", "HEAD")
    on_branch, on_sha = trigger(api, ref="main"), trigger(api, ref=sha)
    assert [(release(api, r)["ref"], release(api, r)["commit"]) for r in (on_branch, on_sha)] == [
        ("main", None), (sha, sha)]
    with app.app_context():
        first = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.release_id == on_sha)
                                   .order_by(AuditEvent.id)).first()
        assert (first.action, first.to_state, first.reason) == ("state", "QUEUED", "triggered")


def test_a_release_triggered_without_a_description_has_none_and_no_review_due(app, api, new_environment):
    """As the CLI and "trigger again" trigger: no description given; only an emergency is reviewed."""
    new_environment(PLAIN, approval_workflow=False, parallel_releases=True)
    with app.app_context():
        environment = db.session.scalar(sa.select(Environment))
        dev = db.session.scalar(sa.select(User).where(User.username == "dev"))
        made, created = releases.trigger(environment, Actor(dev, "cli"), [])
        assert (created, made.description, made.review_due_at) == (True, "", None)


def test_with_parallel_releases_every_queued_release_starts_at_once_saying_so(app, api, new_environment):
    new_environment(PLAIN, approval_workflow=False, parallel_releases=True, release_command="true")
    for release_id in (trigger(api), trigger(api)):
        assert moves(app, release_id) == [("QUEUED", "triggered"),
                                          ("IN_PROGRESS", "started at once (parallel releases)")]


def test_a_serial_environment_gives_the_free_slot_to_the_oldest_queued_release(app, api, new_environment, run_jobs):
    new_environment(PLAIN, approval_workflow=False, release_command="true")
    first, second, third = trigger(api), trigger(api), trigger(api)
    assert [state(api, release_id) for release_id in (first, second, third)] == ["IN_PROGRESS", "QUEUED", "QUEUED"]
    run_jobs()
    with app.app_context():
        started = db.session.scalars(sa.select(AuditEvent.release_id).where(AuditEvent.to_state == "IN_PROGRESS")
                                     .order_by(AuditEvent.id)).all()
    assert started == [first, second, third]


def test_each_environment_has_its_own_queue_a_held_slot_elsewhere_neither_blocks_nor_lends_its_queue(
        app, api, shop):
    for url in (API_QA, API_PROD):
        patch(api, url, approval_workflow=False)
    holder, behind = trigger(api, "dev", path=QA), trigger(api, "dev", path=QA)  # qa's slot is held
    elsewhere = trigger(api, "dev", path="shop/prod")
    assert [state(api, release_id) for release_id in (holder, behind, elsewhere)] == [
        "IN_PROGRESS", "QUEUED", "IN_PROGRESS"]


def test_a_project_freeze_holds_back_the_releases_of_every_environment_in_it(app, api, shop):
    patch(api, "/api/v1/projects/shop", freezes=freeze())
    for path, url in ((QA, API_QA), ("shop/prod", API_PROD)):
        patch(api, url, approval_workflow=False)
        release_id = trigger(api, "dev", path=path)
        assert state(api, release_id) == "SCHEDULED"
        scheduled = release(api, release_id)["scheduled"]
        assert scheduled["reason"] == f"frozen until {scheduled['until']} \u2014 year-end freeze"


def test_a_window_opening_in_one_environment_starts_only_that_environments_scheduled_releases(app, api, shop):
    windows, _opening = closed_now()
    for url in (API_QA, API_PROD):
        patch(api, url, approval_workflow=False, change_windows=windows)
    here, there = trigger(api, "dev", path=QA), trigger(api, "dev", path="shop/prod")
    assert (state(api, here), state(api, there)) == ("SCHEDULED", "SCHEDULED")
    patch(api, API_QA, change_windows=[])  # qa may release at any time now
    assert (state(api, here), state(api, there)) == ("IN_PROGRESS", "SCHEDULED")
    assert row(app, here, "scheduled_reason", "scheduled_until") == (None, None)  # it waits no more
    patch(api, API_QA, change_windows=windows)  # closed again: only the apply itself looks again
    assert (state(api, here), row(app, here, "scheduled_reason")) == ("IN_PROGRESS", (None,))


def test_a_scheduled_release_learns_the_new_reason_it_waits_when_the_settings_change(app, api, shop):
    windows, opening = closed_now()
    patch(api, API_QA, approval_workflow=False, change_windows=windows)
    release_id = trigger(api, "dev", path=QA)
    waits = f"waiting for the change window: opens {opening:%a} 00:00 UTC"
    assert release(api, release_id)["scheduled"]["reason"] == waits
    patch(api, API_QA, freezes=freeze(hours=96))  # a freeze now outlasts the window's opening
    scheduled = release(api, release_id)["scheduled"]
    assert (state(api, release_id), scheduled["reason"]) == (
        "SCHEDULED", f"frozen until {scheduled['until']} \u2014 year-end freeze")


# -- emergency releases ------------------------------------------------------------------------

def test_an_emergency_release_takes_the_slot_saying_what_it_skips_and_records_when_its_review_is_due(
        app, api, emergencies):
    response = emergency(api)
    assert response.status_code == 202, response.json
    release_id = response.json["id"]
    skips = "took the slot; an emergency release skips the hook, the approval rules and the change windows"
    assert moves(app, release_id)[:2] == [("QUEUED", "triggered"), ("IN_PROGRESS", skips)]
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.release_id == release_id,
                                                               AuditEvent.action == "break_glass")).one()
        due = db.session.get(Release, release_id).review_due_at
        assert event.reason == f"emergency release: {REASON}"
        assert event.details == {"review_due_at": f"{due:%Y-%m-%dT%H:%M:%SZ}"}


def test_an_emergency_release_makes_way_only_in_its_own_environment(app, api, emergencies):
    patch(api, API_QA, approval_workflow=False, change_windows=closed_now()[0])
    elsewhere = trigger(api, "dev", path=QA)  # holds qa's slot, waiting for its window
    assert emergency(api).status_code == 202  # in prod
    assert state(api, elsewhere) == "SCHEDULED"


def test_an_emergency_reason_of_10_to_2000_characters_is_taken_and_one_shorter_or_longer_is_refused(
        app, api, emergencies):
    patch(api, API_PROD, approval_workflow=False, parallel_releases=True)
    for reason in ("x" * 9, "x" * 2_001):
        response = emergency(api, reason=reason)
        assert (response.status_code, response.json["error"]) == (422, TOO_SHORT_OR_LONG)
    for reason in ("x" * 10, "x" * 2_000):
        response = emergency(api, reason=reason)
        assert response.status_code == 202, response.json
        assert release(api, response.json["id"])["break_glass"]["reason"] == reason


def test_an_emergency_release_where_they_are_not_allowed_is_refused_saying_what_to_do(app, api, emergencies):
    with app.app_context():
        qa = db.session.get(Environment, environment_id(app, "qa"))
        emergencies.add("qa_oncall", "trigger_release", "break_glass", environment=qa)
    response = emergency(api, "qa_oncall", path=QA)
    assert (response.status_code, response.json["error"]) == (
        409, "shop/qa does not allow emergency releases (allow_break_glass is off); trigger a normal release, or ask "
             "an admin to turn emergency releases on for it.")


def test_emergency_releases_switched_off_while_one_was_being_triggered_refuse_it(app, api, emergencies):
    """The trigger checked the switch on what it read; the environment row, once locked, wins."""
    patch(api, API_PROD, allow_break_glass=False)
    with app.app_context():
        begin_or_join_write()
        prod = db.session.get(Environment, environment_id(app, "prod"))
        set_committed_value(prod, "allow_break_glass", True)  # as read before the switch was turned off
        oncall = db.session.scalars(sa.select(User).where(User.username == "oncall")).one()
        try:
            releases.trigger(prod, Actor(oncall, "api"), [], break_glass=REASON)
        except releases.WrongState as error:
            refusal = str(error)
        else:
            raise AssertionError("the emergency release was triggered")
    assert refusal == ("Emergency releases were turned off for this environment a moment ago; nothing was "
                       "triggered.")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Release.id))) == 0


# -- idempotency keys ----------------------------------------------------------------------------

def test_an_idempotency_key_matches_only_the_same_persons_release_in_the_same_environment(app, api, new_environment):
    new_environment(PLAIN, approval_workflow=False, parallel_releases=True)
    new_environment(PLAIN, name="other", approval_workflow=False, parallel_releases=True)

    def post(who: str, path: str = "svc/env", key: str = "deploy-42"):
        project, environment = path.split("/")
        response = api(who).post(f"/api/v1/projects/{project}/environments/{environment}/releases",
                                 json={"resources": []}, headers={"Idempotency-Key": key})
        assert response.status_code in (200, 201, 202), response.json
        return response.json["id"]

    keyless = trigger(api, "dev")  # an earlier release of the same person, without a key
    first = post("dev")
    assert post("dev") == first != keyless
    others = {post("approver"), post("dev", "svc/other"), post("dev", key="deploy-43")}
    assert first not in others and len(others) == 3


def test_a_window_that_closed_before_the_apply_started_sends_it_back_saying_until_when(app, api, shop, run_jobs,
                                                                                       tally):
    patch(api, "/api/v1/projects/shop/environments/qa", release_command=tally.send())
    release_id, opening = started_outside_its_window(app, api, run_jobs)
    run_jobs()  # the apply judges the window by the database's clock, for which it is closed
    assert tally.lines == []  # and its command never ran
    reason = f"waiting for the change window: opens {opening:%a} 00:00 UTC"
    assert release(api, release_id)["scheduled"] == {"reason": reason, "until": f"{opening:%Y-%m-%dT%H:%M:%SZ}"}
    assert moves(app, release_id)[-1] == ("SCHEDULED", f"the change window closed before it started applying; {reason}")



def test_a_release_outside_every_window_is_scheduled_started_and_the_hook_result_says_scheduled(app, api, shop):
    windows, opening = closed_now()
    patch(api, "/api/v1/projects/shop/environments/qa", change_windows=windows, approval_workflow=False)
    waiting = trigger(api, "dev", path=QA)  # dispatch schedules it at once: no hook
    assert state(api, waiting) == "SCHEDULED" and row(app, waiting, "started_at")[0] is not None
    assert moves(app, waiting)[-1] == ("SCHEDULED", "took the slot; approval workflow is off; waiting for the "
                                                    f"change window: opens {opening:%a} 00:00 UTC")
    patch(api, "/api/v1/projects/shop/environments/prod", change_windows=windows)
    release_id = trigger(api, "dev", path="shop/prod")
    (started,) = row(app, release_id, "started_at")
    with app.app_context():  # the hook's report, as the worker makes it
        assert releases.record_hook_result(release_id, exit_code=0, output="ok\n", truncated=False) == "SCHEDULED"
    assert state(api, release_id) == "SCHEDULED" and row(app, release_id, "started_at") == (started,)
    assert moves(app, release_id)[-1] == ("SCHEDULED", "pre-release hook exited 0; waiting for the change window: "
                                                       f"opens {opening:%a} 00:00 UTC")
