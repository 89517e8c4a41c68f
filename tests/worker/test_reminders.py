"""Reminders (issue 14): a release pending for its environment's reminder_hours asks again the
people whose approval would still count, once each interval, by mail and webhook, in the audit."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from tests.helpers import state, trigger
from tests.worker.test_webhooks import add_webhook, app_config  # noqa: F401 - its receiver is on this machine
from webapp.extensions import db
from webapp.models import AuditEvent, OutgoingMail, Release
from webapp.reconcile import reconcile

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "echo waiting\nexit 2\n"}
ENV = "/api/v1/projects/svc/environments/env"


def reminders(app, release_id: int) -> list[AuditEvent]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.release_id == release_id, AuditEvent.action == "reminder").order_by(AuditEvent.id)))
        db.session.expunge_all()
        return found


def test_a_pending_release_is_reminded_once_each_interval(app, api, people, new_environment, run_jobs,
                                                          run_notify_jobs):
    people.add("second", "approve_release")
    new_environment(WAITS)
    assert api("admin").patch(ENV, json={"reminder_hours": 2}).json["reminder_hours"] == 2
    release_id = trigger(api, "dev")
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    with app.app_context():
        since = db.session.get(Release, release_id).pending_since
        assert reconcile(since + timedelta(hours=1, minutes=59))["reminded"] == []
        assert reconcile(since + timedelta(hours=2))["reminded"] == [release_id]
        assert reconcile(since + timedelta(hours=3))["reminded"] == []  # once per interval
        assert reconcile(since + timedelta(hours=4, minutes=1))["reminded"] == [release_id]
    assert [event.reason for event in reminders(app, release_id)] == [
        "reminder: waiting for approval for 2 h", "reminder: waiting for approval for 4 h"]
    run_notify_jobs()
    with app.app_context():
        first = reminders(app, release_id)[0]
        mails = db.session.scalars(sa.select(OutgoingMail).where(OutgoingMail.audit_event_id == first.id)).all()
        assert sorted(mail.user.username for mail in mails) == ["admin", "approver", "second"]  # not dev
        assert all(mail.subject.startswith("[Releasegate] Reminder: svc/env") for mail in mails)
        assert "Reminder: release #" in mails[0].body_text


def test_a_reminder_asks_only_those_still_counting_and_never_after_a_decision(app, api, people, new_environment,
                                                                             run_jobs, run_notify_jobs, web,
                                                                             httpserver):
    from webapp.models import Group, User

    httpserver.expect_request("/hook").respond_with_data("ok")
    people.add("dana", "approve_release")
    with app.app_context():
        db.session.add(Group(name="dba", members=[db.session.scalar(sa.select(User).where(User.username == "dana"))]))
        db.session.commit()
    new_environment(WAITS)
    api("admin").patch(ENV, json={"reminder_hours": 1, "approval_rules": [
        {"name": "default", "group": None, "approvals": 1}, {"name": "dba", "group": "dba", "approvals": 1}]})
    add_webhook(web, httpserver.url_for("/hook"), events=["release.reminder"])
    release_id = trigger(api, "dev")
    run_jobs()
    assert api("approver").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200
    run_notify_jobs()
    with app.app_context():
        since = db.session.get(Release, release_id).pending_since
        assert reconcile(since + timedelta(hours=1))["reminded"] == [release_id]
    run_notify_jobs()
    with app.app_context():
        event = reminders(app, release_id)[0]
        mailed = db.session.scalars(sa.select(OutgoingMail).where(OutgoingMail.audit_event_id == event.id)).all()
        assert sorted(mail.user.username for mail in mailed) == ["dana"]  # the default rule is met
    [(request, _)] = httpserver.log
    assert request.headers["X-Releasegate-Event"] == "release.reminder"
    assert api("dana").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200
    with app.app_context():
        assert reconcile(since + timedelta(hours=5))["reminded"] == []  # decided: nothing to remind of


def test_the_pending_page_says_when_the_release_expires(app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    api("admin").patch(ENV, json={"approval_timeout_hours": 24})
    release_id = trigger(api, "dev")
    run_jobs()
    with app.app_context():
        expires = db.session.get(Release, release_id).pending_since + timedelta(hours=24)
    page = web("member").get(f"/releases/{release_id}").text
    assert f'id="expires-at"><time datetime="{expires:%Y-%m-%dT%H:%M:%SZ}" ' in page


def test_the_slack_line_of_a_reminder_says_it_still_waits():
    from webapp.notify.webhooks import slack_text

    body = {"event": "release.reminder", "environment": {"project": "shop", "name": "prod"}, "by": "system",
            "reason": "reminder: waiting for approval for 4 h", "release": {"id": 7},
            "links": {"release": "https://rg.example.com/releases/7"}}
    assert slack_text(body) == ("shop/prod release #7 is still waiting for approval (reminder: waiting for approval "
                                "for 4 h). <https://rg.example.com/releases/7|Open release #7>")
