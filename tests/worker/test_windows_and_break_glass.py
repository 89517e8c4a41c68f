"""Change windows, freezes and emergency releases (issue 14), through the API with real hooks
and release commands: a release that would start applying outside every window, or during a
freeze, waits as SCHEDULED holding the slot and starts when it may; an emergency release skips
the hook, the rules and the windows, jumps the queue, and is reviewed afterwards.

Time is passed in (releases.dispatch(now=…), reconcile(now)), never slept; windows are chosen
relative to the real clock, which is what the database reads."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import release, state, trigger
from webapp import releases
from webapp.accounts import add_grant
from webapp.extensions import db
from webapp.models import AuditEvent, EmailLink, Environment, Release, User
from webapp.notify import email_links
from webapp.reconcile import reconcile
from webapp.windows import DAYS

QA, PROD = "shop/qa", "shop/prod"
API_QA, API_PROD = "/api/v1/projects/shop/environments/qa", "/api/v1/projects/shop/environments/prod"
REASON = "checkout returns 500 for every customer"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def closed_now() -> tuple[list[dict], datetime]:
    """A window on the day after tomorrow (UTC), so none is open now; and the moment it opens."""
    day = (now() + timedelta(days=2)).date()
    windows = [{"days": [DAYS[day.weekday()]], "start": "00:00", "end": "23:59", "tz": "UTC"}]
    return windows, datetime.combine(day, datetime.min.time())


def freeze(reason: str = "year-end freeze", hours: float = 24) -> list[dict]:
    moment = now()
    return [{"from": f"{moment - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
             "to": f"{moment + timedelta(hours=hours):%Y-%m-%dT%H:%M:%SZ}", "reason": reason}]


def environment_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Environment.id).where(Environment.name == name))


def moves(app, release_id: int) -> list[tuple[str, str]]:
    with app.app_context():
        return [(event.to_state, event.reason) for event in db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.release_id == release_id, AuditEvent.to_state.is_not(None))
            .order_by(AuditEvent.id))]


def user_id(name: str) -> int:
    return db.session.scalar(sa.select(User.id).where(User.username == name))


def patch(api, url: str, **settings) -> dict:
    response = api("admin").patch(url, json=settings)
    assert response.status_code == 200, response.json
    return response.json


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


# -- emergency releases -----------------------------------------------------------------------------

@pytest.fixture()
def emergencies(app, api, people, shop):
    """prod allows emergency releases; `oncall` may trigger them there (and approve elsewhere not)."""
    patch(api, API_PROD, allow_break_glass=True)
    with app.app_context():
        prod = db.session.get(Environment, environment_id(app, "prod"))
        people.add("oncall", "trigger_release", "break_glass", environment=prod)
    return people


def emergency(api, who: str = "oncall", path: str = PROD, reason: str = REASON):
    project, environment = path.split("/")
    return api(who).post(f"/api/v1/projects/{project}/environments/{environment}/releases",
                         json={"resources": [], "break_glass": {"reason": reason}})


def test_an_emergency_release_jumps_a_pending_one_which_runs_its_hook_again_afterwards(app, api, emergencies,
                                                                                      run_jobs):
    patch(api, API_PROD, approval_rules=[{"name": "two", "group": None, "approvals": 2}])
    pending = trigger(api, "dev", path=PROD)
    run_jobs()
    assert api("approver").post(f"/api/v1/releases/{pending}/approve", json={}).status_code == 200
    with app.app_context():
        email_links.issue(user_id("admin"), pending, "approve")
        db.session.commit()

    response = emergency(api)
    assert response.status_code == 202, response.json
    urgent = response.json
    assert urgent["state"] == "IN_PROGRESS" and urgent["hook"]["exit_code"] is None  # no hook
    assert urgent["break_glass"]["reason"] == REASON and urgent["break_glass"]["review"] is None
    assert state(api, pending) == "QUEUED"
    assert release(api, pending)["decisions"] == []
    [(_, why)] = [move for move in moves(app, pending) if move[0] == "QUEUED"][1:]
    assert why == (f"back to the queue behind emergency release #{urgent['id']} (by oncall); its hook runs again "
                   "when it gets the slot, and the approvals given so far (approver) no longer count")
    with app.app_context():
        link = db.session.scalar(sa.select(EmailLink).where(EmailLink.release_id == pending))
        assert link.revoked_at is not None and "emergency release" in link.revoked_reason

    run_jobs()  # the emergency release applies, then the pending one's hook runs again
    assert state(api, urgent["id"]) == "SUCCEEDED"
    again = release(api, pending)
    assert again["state"] == "PENDING_APPROVAL" and again["approval"]["rules"][0]["approved_by"] == []
    hooks = [reason for to_state, reason in moves(app, pending) if to_state == "READY"]
    assert len(hooks) == 2


def test_an_emergency_release_goes_ahead_of_the_queue_but_never_interrupts_a_running_one(app, api, emergencies,
                                                                                        run_jobs):
    patch(api, API_PROD, approval_workflow=False)  # a serial queue: each release applies at once
    running = trigger(api, "dev", path=PROD)
    queued = trigger(api, "dev", path=PROD)
    assert (state(api, running), state(api, queued)) == ("IN_PROGRESS", "QUEUED")
    urgent = emergency(api).json
    assert urgent["state"] == "QUEUED" and state(api, running) == "IN_PROGRESS"
    with app.app_context():
        assert releases.record_execution_result(running, exit_code=0, output="", truncated=False) == "SUCCEEDED"
    assert (state(api, urgent["id"]), state(api, queued)) == ("IN_PROGRESS", "QUEUED")


def test_an_emergency_release_skips_a_freeze_and_sends_a_scheduled_release_back_behind_it(app, api, emergencies,
                                                                                         run_jobs):
    patch(api, API_PROD, approval_workflow=False, freezes=freeze())
    waiting = trigger(api, "dev", path=PROD)
    assert state(api, waiting) == "SCHEDULED"
    urgent = emergency(api).json
    assert urgent["state"] == "IN_PROGRESS"
    assert state(api, waiting) == "QUEUED"
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED"
    assert state(api, waiting) == "SCHEDULED"  # the freeze still holds for it


@pytest.mark.parametrize("who, body, status, says", [
    ("dev", {"reason": REASON}, 403, "\u201cEmergency release (break-glass)\u201d permission on shop/prod"),
    ("oncall", {"reason": "it broke"}, 422, "needs a reason of 10 to 2,000 characters"),
    ("oncall", {"reason": "          x         "}, 422, "needs a reason of 10 to 2,000 characters"),
    ("oncall", {"why": REASON}, 400, '"break_glass" must be an object like {"reason"'),
    ("oncall", "now", 400, '"break_glass" must be an object like {"reason"'),
])
def test_an_emergency_release_is_refused_without_the_permission_or_a_reason(app, api, emergencies, who, body,
                                                                           status, says):
    response = api(who).post(f"{API_PROD}/releases", json={"resources": [], "break_glass": body})
    assert response.status_code == status and says in response.json["error"], response.json
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Release.id))) == 0


def test_an_emergency_release_is_refused_where_the_environment_does_not_allow_them(app, api, emergencies):
    with app.app_context():
        qa = db.session.get(Environment, environment_id(app, "qa"))
        emergencies.add("qa_oncall", "trigger_release", "break_glass", environment=qa)
    response = emergency(api, "qa_oncall", path=QA)
    assert response.status_code == 409
    assert response.json["error"].startswith("shop/qa does not allow emergency releases (allow_break_glass is off)")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Release.id))) == 0


def test_turning_emergency_releases_on_is_announced_as_weakening_the_gate(app, api, shop):
    patch(api, API_PROD, allow_break_glass=True)
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "settings")
                                  .order_by(AuditEvent.id.desc()))
        assert event.details["weakens_gate"] == ["allow_break_glass"]
    patch(api, API_PROD, allow_break_glass=False)
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "settings")
                                  .order_by(AuditEvent.id.desc()))
        assert event.details["weakens_gate"] == []


# -- the review afterwards --------------------------------------------------------------------------

def test_an_emergency_release_is_reviewed_once_after_it_finished_by_someone_else_who_may_approve(app, api,
                                                                                               emergencies,
                                                                                               run_jobs):
    urgent = emergency(api).json
    url = f"/api/v1/releases/{urgent['id']}/review"
    answer = api("approver").post(url, json={"comment": "early"})
    assert answer.status_code == 409 and "only a release that is finished can" in answer.json["error"]
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED"

    emergencies.add("lead", "approve_release", "break_glass", "trigger_release")
    answer = api("oncall").post(url, json={"comment": "mine"})
    assert answer.status_code == 403  # oncall may not approve at all
    with app.app_context():
        add_grant(db.session.get(User, user_id("oncall")), "approve_release",
                  db.session.get(Environment, environment_id(app, "prod")))
    answer = api("oncall").post(url, json={"comment": "mine"})
    assert answer.status_code == 403 and "You triggered this emergency release" in answer.json["error"]
    answer = api("approver").post(url, json={"comment": ""})
    assert answer.status_code == 422 and "A review needs a comment" in answer.json["error"]

    answer = api("approver").post(url, json={"comment": "the hotfix was the right call"})
    assert answer.status_code == 200, answer.json
    review = answer.json["break_glass"]["review"]
    assert (review["by"], review["comment"]) == ("approver", "the hotfix was the right call") and review["at"]
    answer = api("lead").post(url, json={"comment": "me too"})
    assert answer.status_code == 409 and "was reviewed already, by approver" in answer.json["error"]

    normal = trigger(api, "dev", path=QA)
    answer = api("approver").post(f"/api/v1/releases/{normal}/review", json={"comment": "x"})
    assert answer.status_code == 409 and "is not an emergency release" in answer.json["error"]


def test_overdue_reviews_are_announced_when_due_and_again_each_day_until_reviewed(app, api, emergencies,
                                                                                run_jobs):
    patch(api, API_PROD, break_glass_review_hours=2)
    urgent = emergency(api).json
    run_jobs()
    with app.app_context():
        row = db.session.get(Release, urgent["id"])
        due = row.review_due_at
        assert abs(due - row.created_at - timedelta(hours=2)) < timedelta(seconds=5)
        assert urgent["break_glass"]["review_due_at"] == f"{due:%Y-%m-%dT%H:%M:%SZ}"
        assert reconcile(due - timedelta(minutes=1))["reviews_overdue"] == []
        assert reconcile(due)["reviews_overdue"] == [urgent["id"]]
        assert reconcile(due + timedelta(hours=12))["reviews_overdue"] == []
        assert reconcile(due + timedelta(days=1))["reviews_overdue"] == [urgent["id"]]
    assert api("approver").post(f"/api/v1/releases/{urgent['id']}/review",
                                json={"comment": "right call"}).status_code == 200
    with app.app_context():
        assert reconcile(due + timedelta(days=3))["reviews_overdue"] == []
        overdue = db.session.scalars(sa.select(AuditEvent.reason).where(AuditEvent.action == "review_overdue")).all()
    assert len(overdue) == 2 and overdue[0].startswith(f"the review of emergency release #{urgent['id']} was due")


# -- what an attacker's reading of the above found (review of issue 14) -----------------------------

def test_a_scheduled_bot_release_is_cancelled_by_an_emergency_release_never_applied_after_it(app, api, emergencies,
                                                                                            run_jobs):
    """Its approval was for what ran before: applying it after the emergency fix could undo it."""
    patch(api, API_PROD, freezes=freeze())
    pending = trigger(api, "dev", path=PROD)
    run_jobs()
    bot = api("approver").post(f"/api/v1/releases/{pending}/approve", json={}).json["bot_release_id"]
    assert state(api, bot) == "SCHEDULED"
    urgent = emergency(api).json
    assert urgent["state"] == "IN_PROGRESS"
    cancelled = release(api, bot)
    assert cancelled["state"] == "CANCELLED"
    assert cancelled["error"].startswith(f"cancelled: emergency release #{urgent['id']} (by oncall) took the slot")
    patch(api, API_PROD, freezes=[])
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED" and state(api, bot) == "CANCELLED"
    assert release(api, bot)["execution"]["exit_code"] is None


def test_a_release_sent_back_compares_its_changes_again_with_what_the_emergency_release_deployed(app, api,
                                                                                               emergencies,
                                                                                               run_jobs):
    pending = trigger(api, "dev", path=PROD)
    run_jobs()
    assert release(api, pending)["since"]["previous_release_id"] is None  # the first release here
    urgent = emergency(api).json
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED"
    again = release(api, pending)
    assert again["state"] == "PENDING_APPROVAL"
    assert again["since"]["previous_release_id"] == urgent["id"]


def test_an_emergency_release_queued_behind_a_running_hook_takes_the_slot_when_that_hook_asks_for_approval(
        app, api, emergencies, run_jobs):
    holder = trigger(api, "dev", path=PROD)
    assert state(api, holder) == "READY"  # its hook is queued
    urgent = emergency(api).json
    assert urgent["state"] == "QUEUED"  # a hook that runs is never interrupted
    with app.app_context():
        assert releases.record_hook_result(holder, exit_code=2, output="", truncated=False) == "PENDING_APPROVAL"
    assert state(api, urgent["id"]) == "IN_PROGRESS"
    assert state(api, holder) == "QUEUED"


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


def test_an_overdue_review_is_announced_only_once_the_release_finished(app, api, emergencies, run_jobs):
    patch(api, API_PROD, approval_workflow=False, break_glass_review_hours=1)
    running = trigger(api, "dev", path=PROD)
    urgent = emergency(api).json
    assert (state(api, running), urgent["state"]) == ("IN_PROGRESS", "QUEUED")
    with app.app_context():
        due = db.session.get(Release, urgent["id"]).review_due_at
        assert reconcile(due + timedelta(hours=1))["reviews_overdue"] == []  # it cannot be reviewed yet
    run_jobs()
    assert state(api, urgent["id"]) == "SUCCEEDED"
    with app.app_context():
        assert reconcile(due + timedelta(hours=1))["reviews_overdue"] == [urgent["id"]]


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
