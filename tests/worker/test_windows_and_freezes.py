"""Change windows and freezes (issue 14), through the API with real hooks and release commands:
a release that would start applying outside every window, or during a freeze, waits as
SCHEDULED holding the slot and starts when it may; settings that let releases start more often
weaken the gate.

Time is passed in (releases.dispatch(now=…), reconcile(now)), never slept; windows are chosen
relative to the real clock, which is what the database reads. Emergency releases are in
test_break_glass.py.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import release, state, trigger
from tests.worker.windows_and_break_glass_support import (
    API_PROD,
    API_QA,
    PROD,
    QA,
    closed_now,
    environment_id,
    freeze,
    moves,
    patch,
)
from webapp import releases
from webapp.extensions import db
from webapp.models import AuditEvent, Environment
from webapp.reconcile import reconcile

# -- change windows ----------------------------------------------------------------------------------

def test_a_release_outside_every_window_waits_scheduled_and_starts_when_the_window_opens(app, api, shop, run_jobs):
    windows, opening = closed_now()
    assert patch(api, API_QA, change_windows=windows)["change_windows"] == windows
    release_id = trigger(api, "dev", path=QA)
    run_jobs()  # the hook runs all the same, and exits 0 for QA
    shown = release(api, release_id)
    assert shown["state"] == "SCHEDULED" and shown["hook"]["exit_code"] == 0
    day = f"{opening:%a}"
    assert shown["scheduled"] == {"reason": f"waiting for the change window: opens {day} 00:00 UTC",
                                  "until": f"{opening:%Y-%m-%dT%H:%M:%SZ}"}
    assert shown["execution"]["exit_code"] is None  # nothing applied
    later = trigger(api, "dev", path=QA)
    assert state(api, later) == "QUEUED"  # the scheduled release holds the slot

    env = environment_id(app, "qa")
    with app.app_context():
        releases.dispatch(env, now=opening - timedelta(seconds=1))
    assert state(api, release_id) == "SCHEDULED"
    with app.app_context():
        releases.dispatch(env, now=opening)
    shown = release(api, release_id)
    assert (shown["state"], shown["scheduled"]) == ("IN_PROGRESS", None)
    assert moves(app, release_id)[-1] == ("IN_PROGRESS", "the change window is open")
    # Its apply judges the window again by the database's clock, for which it is still closed.
    run_jobs()
    assert state(api, release_id) == "SCHEDULED" and release(api, release_id)["execution"]["exit_code"] is None
    patch(api, API_QA, change_windows=[])
    run_jobs()
    assert (state(api, release_id), state(api, later)) == ("SUCCEEDED", "SUCCEEDED")


def test_the_database_clock_decides_not_the_clock_a_worker_passes_to_the_reconciler(app, api, shop, run_jobs):
    windows, opening = closed_now()
    patch(api, API_QA, change_windows=windows)
    release_id = trigger(api, "dev", path=QA)
    run_jobs()
    assert state(api, release_id) == "SCHEDULED"
    with app.app_context():
        reconcile(opening + timedelta(hours=1))  # a worker whose clock runs two days fast
    assert state(api, release_id) == "SCHEDULED"


def test_changing_the_windows_so_that_it_may_start_starts_it_at_once(app, api, shop, run_jobs):
    windows, _ = closed_now()
    patch(api, "/api/v1/projects/shop", change_windows=windows)  # the project's, for every environment
    release_id = trigger(api, "dev", path=QA)
    run_jobs()
    assert state(api, release_id) == "SCHEDULED"
    patch(api, API_QA, change_windows=[])  # qa's own: always open
    assert state(api, release_id) == "IN_PROGRESS"
    run_jobs()
    assert state(api, release_id) == "SUCCEEDED"

    patch(api, API_QA, change_windows=None)  # the project's again
    second = trigger(api, "dev", path=QA)
    run_jobs()
    assert state(api, second) == "SCHEDULED"
    patch(api, "/api/v1/projects/shop", change_windows=[])
    assert state(api, second) == "IN_PROGRESS"


def test_settings_that_are_not_windows_are_refused_with_a_sentence(api, shop):
    response = api("admin").patch(API_QA, json={"change_windows": [{"days": ["mon"], "start": "16:00",
                                                                    "end": "09:00", "tz": "UTC"}]})
    assert response.status_code == 422
    assert "start must be before end" in response.json["error"]
    response = api("admin").patch(API_QA, json={"freezes": [{"from": "soon", "to": "2027-01-01T00:00:00Z",
                                                             "reason": "x"}]})
    assert response.status_code == 422 and "must be a UTC time like" in response.json["error"]
    assert api("admin").get(API_QA).json["freezes"] == []


# -- freezes ----------------------------------------------------------------------------------------

def test_during_a_freeze_hooks_run_and_approvals_count_but_nothing_applies_until_it_ends(app, api, shop, run_jobs):
    frozen = freeze("year-end freeze")
    patch(api, API_PROD, freezes=frozen)
    shown = api("member").get(API_PROD).json
    assert shown["window"] == {"open": False, "reason": f"frozen until {frozen[0]['to']} \u2014 year-end freeze",
                               "until": frozen[0]["to"]}
    release_id = trigger(api, "dev", path=PROD)
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"  # the hook ran during the freeze
    answer = api("approver").post(f"/api/v1/releases/{release_id}/approve", json={"comment": "ahead"})
    assert answer.status_code == 200, answer.json
    bot = release(api, answer.json["bot_release_id"])
    assert bot["state"] == "SCHEDULED"
    assert bot["scheduled"] == {"reason": f"frozen until {frozen[0]['to']} \u2014 year-end freeze",
                                "until": frozen[0]["to"]}
    with app.app_context():
        releases.dispatch(environment_id(app, "prod"), now=datetime.fromisoformat(frozen[0]["to"][:-1]))
    assert moves(app, bot["id"])[-1] == ("IN_PROGRESS", "the change window is open")  # when the freeze ends
    patch(api, API_PROD, freezes=[])  # (ended by the database's clock, too)
    run_jobs()
    assert state(api, bot["id"]) == "SUCCEEDED"


def test_a_scheduled_release_can_be_aborted_and_frees_the_slot(app, api, shop, run_jobs):
    patch(api, API_QA, freezes=freeze())
    waiting = trigger(api, "dev", path=QA)
    run_jobs()
    behind = trigger(api, "dev", path=QA)
    assert (state(api, waiting), state(api, behind)) == ("SCHEDULED", "QUEUED")
    response = api("dev").post(f"/api/v1/releases/{waiting}/abort")
    assert response.status_code == 200, response.json
    assert (response.json["state"], response.json["error"]) == ("FAILED", "aborted by dev")
    assert state(api, behind) == "READY"  # its hook gets the slot


def test_in_parallel_mode_every_release_waits_for_the_freeze_and_all_start_when_it_is_lifted(app, api, shop):
    patch(api, API_QA, approval_workflow=False, parallel_releases=True, freezes=freeze())
    first, second = trigger(api, "dev", path=QA), trigger(api, "dev", path=QA)
    assert (state(api, first), state(api, second)) == ("SCHEDULED", "SCHEDULED")
    patch(api, API_QA, freezes=[])
    assert (state(api, first), state(api, second)) == ("IN_PROGRESS", "IN_PROGRESS")


# -- what an attacker's reading of the above found (review of issue 14) -----------------------------


def test_an_apply_that_finds_its_window_closed_when_its_job_runs_waits_scheduled(app, api, shop, run_jobs):
    """The window is judged again when the apply starts, not only when the release became
    IN_PROGRESS: its job may wait in the queue (or be lost and re-queued) meanwhile."""
    patch(api, API_QA, approval_workflow=False)
    release_id = trigger(api, "dev", path=QA)
    assert state(api, release_id) == "IN_PROGRESS"  # its apply job is queued, not run yet
    with app.app_context():  # a freeze begins meanwhile (set as the settings page would, without a dispatch)
        db.session.get(Environment, environment_id(app, "qa")).freezes = freeze("incident freeze")
        db.session.commit()
    run_jobs()
    shown = release(api, release_id)
    assert shown["state"] == "SCHEDULED" and shown["execution"]["exit_code"] is None
    assert shown["scheduled"]["reason"].endswith("\u2014 incident freeze")
    assert moves(app, release_id)[-1][1].startswith("the change window closed before it started applying")
    patch(api, API_QA, freezes=[])
    run_jobs()
    assert state(api, release_id) == "SUCCEEDED"


def test_freezes_in_any_year_are_stored_as_they_are_read_back(app, api, shop, run_jobs):
    old = [{"from": "0999-01-01T00:00:00Z", "to": "1000-01-01T00:00:00Z", "reason": "long ago"}]
    assert patch(api, "/api/v1/projects/shop", freezes=old)["freezes"] == old
    release_id = trigger(api, "dev", path=QA)
    run_jobs()
    assert state(api, release_id) == "SUCCEEDED"


def test_a_time_zone_that_is_whatever_the_host_says_is_refused(api, shop):
    for zone in ("localtime", "Factory"):
        response = api("admin").patch(API_QA, json={"change_windows": [
            {"days": ["mon"], "start": "09:00", "end": "16:00", "tz": zone}]})
        assert response.status_code == 422 and "must be a time zone name" in response.json["error"], zone


def weakens(app) -> list[list[str]]:
    with app.app_context():
        return [event.details.get("weakens_gate") for event in db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "settings").order_by(AuditEvent.id))]


@pytest.mark.parametrize("before, after, weakened", [
    ({"freezes": freeze()}, {"freezes": []}, ["freezes"]),
    ({"freezes": []}, {"freezes": freeze()}, []),
    ({"change_windows": closed_now()[0]}, {"change_windows": []}, ["change_windows"]),
    ({"change_windows": []}, {"change_windows": closed_now()[0]}, []),
    ({"change_windows": closed_now()[0]}, {"change_windows": closed_now()[0] + [
        {"days": ["sat"], "start": "01:00", "end": "02:00", "tz": "UTC"}]}, ["change_windows"]),
    ({"break_glass_review_hours": 24}, {"break_glass_review_hours": 48}, ["break_glass_review_hours"]),
    ({"break_glass_review_hours": 24}, {"break_glass_review_hours": 4}, []),
])
def test_windows_and_freezes_that_let_releases_start_more_often_weaken_the_gate(app, api, shop, before, after,
                                                                              weakened):
    patch(api, API_QA, **before)
    patch(api, API_QA, **after)
    assert weakens(app)[-1] == weakened


def test_lifting_a_project_freeze_is_announced_to_each_of_its_environments(app, api, shop):
    patch(api, "/api/v1/projects/shop", freezes=freeze(), change_windows=closed_now()[0])
    patch(api, API_QA, change_windows=[])  # qa's own windows: the project's do not reach it
    patch(api, "/api/v1/projects/shop", freezes=[], change_windows=[])
    with app.app_context():
        events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "settings",
                                                                AuditEvent.reason == "project shop changed")).all()
        by_environment = {db.session.get(Environment, e.environment_id).name: e.details["weakens_gate"]
                          for e in events}
    assert by_environment == {"qa": ["project.freezes"], "prod": ["project.change_windows", "project.freezes"]}
