"""Emergency releases are loud (issue 14): the break-glass and, once overdue, its review are
mailed to every admin and approver of the environment, through a real SMTP server (aiosmtpd),
and posted to the webhooks subscribed to them (pytest-httpserver)."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.notify_support import html_part, links, text_part
from tests.worker.test_webhooks import add_webhook
from webapp.extensions import db
from webapp.models import Environment, OutgoingMail, Release, User

REASON = "checkout returns 500 for every card payment since the 14:02 deploy"
APPROVERS = ["admin", "approver", "envapprover"]  # who may approve in svc/env, admins included


@pytest.fixture()
def app_config(app_config, smtp_server):
    # The webhook receiver listens on this machine: local destinations allowed here.
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port,
            "MAIL_SENDER": "Releasegate <releasegate@example.com>", "BASE_URL": "https://rg.example.com",
            "WEBHOOK_ALLOW_LOCAL": True, "NOTIFY_RETRY_SECONDS": (1, 1, 1)}


@pytest.fixture()
def emergency_env(app, people, new_environment):
    """svc/env allowing emergency releases; medic may trigger one there. Around them: an approver
    for svc/env only (granted twice), an approver and an admin who were deactivated, and an
    approver of another environment."""
    new_environment({"README": "x\n"})
    new_environment({"README": "x\n"}, name="other")
    with app.app_context():
        env = db.session.scalar(sa.select(Environment).where(Environment.name == "env"))
        other = db.session.scalar(sa.select(Environment).where(Environment.name == "other"))
        env.allow_break_glass = True
        db.session.commit()
        people.add("medic", "trigger_release", "break_glass", environment=env)
        people.add("envapprover", "approve_release", environment=env)
        people.add("otherapprover", "approve_release", environment=other)
    people.add("gone", "approve_release")
    people.add("retired", admin=True)
    with app.app_context():
        from webapp.accounts import add_grant

        envapprover = db.session.scalar(sa.select(User).where(User.username == "envapprover"))
        add_grant(envapprover, "approve_release")  # for all environments as well: still one mail
        db.session.execute(sa.update(User).where(User.username.in_(("gone", "retired"))).values(active=False))
        db.session.commit()


def break_glass(app, who: str = "medic", reason: str = REASON) -> int:
    from tests.helpers import CHANGE
    from webapp import releases
    from webapp.transactions import Actor

    with app.app_context():
        env = db.session.scalar(sa.select(Environment).where(Environment.name == "env"))
        user = db.session.scalar(sa.select(User).where(User.username == who))
        release, created = releases.trigger(env, Actor(user, "api"), CHANGE, break_glass=reason)
        assert created
        return release.id


def review_due_at(app, release_id: int):
    with app.app_context():
        return db.session.get(Release, release_id).review_due_at


def mailed(app, kind: str) -> list[tuple[str, str]]:
    with app.app_context():
        return sorted(db.session.execute(
            sa.select(User.username, OutgoingMail.status).join(User, OutgoingMail.user_id == User.id)
            .where(OutgoingMail.kind == kind)).all())


def recipients(smtp_server) -> list[str]:
    return sorted(m["To"].addresses[0].username for m in smtp_server.messages)


def test_an_emergency_release_mails_every_admin_and_approver_of_its_environment_once(
        app, emergency_env, run_notify_jobs, smtp_server):
    release_id = break_glass(app)
    run_notify_jobs()

    # Not the inactive approver or admin, not the other environment's approver, not dev, member or
    # medic (who may not approve); envapprover once, whatever their two grants.
    assert recipients(smtp_server) == APPROVERS
    assert mailed(app, "break_glass") == [(name, "sent") for name in APPROVERS]
    message = smtp_server.inbox.to("envapprover@example.com")[0]
    assert message["Subject"] == (f"[Releasegate] EMERGENCY: svc/env (QA): emergency release #{release_id} "
                                  "triggered by medic")
    text = text_part(message)
    assert f"medic triggered EMERGENCY release #{release_id} of svc/env" in text
    assert f"Reason:\r\n  | {REASON}\r\n" in text
    assert "skips the pre-release hook, the approval rules and the change windows" in text
    due = review_due_at(app, release_id)
    assert (f'It must be reviewed by {due:%Y-%m-%d %H:%M} UTC, by someone with the "Release Approval/Reject" '
            "permission on svc/env who did not trigger it") in text
    assert links(message) == {"Release page": f"https://rg.example.com/releases/{release_id}"}  # nothing to approve
    html = html_part(message)
    assert REASON in html and f"{due:%Y-%m-%d %H:%M} UTC" in html
    assert f'href="https://rg.example.com/releases/{release_id}"' in html and "/email/links/" not in html


def test_an_emergency_release_by_an_approver_tells_them_someone_else_must_review_it(
        app, emergency_env, run_notify_jobs, smtp_server):
    from webapp.accounts import add_grant

    with app.app_context():
        env = db.session.scalar(sa.select(Environment).where(Environment.name == "env"))
        add_grant(db.session.scalar(sa.select(User).where(User.username == "approver")), "break_glass", env)
    break_glass(app, "approver")
    run_notify_jobs()

    assert recipients(smtp_server) == APPROVERS
    assert "(you triggered it, so someone else must)" in text_part(smtp_server.inbox.to("approver@example.com")[0])
    assert "you triggered it" not in text_part(smtp_server.inbox.to("admin@example.com")[0])


def test_a_webhook_subscribed_to_release_break_glass_receives_the_reason_and_the_review_deadline(
        app, web, emergency_env, run_notify_jobs, httpserver):
    httpserver.expect_request("/pager", method="POST").respond_with_data("ok")
    assert add_webhook(web, httpserver.url_for("/pager"), events=["release.break_glass"]).status_code == 302
    release_id = break_glass(app)
    run_notify_jobs()

    [(request, _)] = httpserver.log  # not release.queued: not subscribed
    assert request.headers["X-Releasegate-Event"] == "release.break_glass"
    body = request.get_json()
    assert (body["event"], body["by"], body["reason"]) == ("release.break_glass", "medic",
                                                           f"emergency release: {REASON}")
    assert body["release"]["id"] == release_id
    assert body["release"]["break_glass"] == {
        "reason": REASON, "review": None, "review_due_at": f"{review_due_at(app, release_id):%Y-%m-%dT%H:%M:%SZ}"}
    assert body["links"] == {"release": f"https://rg.example.com/releases/{release_id}",
                             "environment": "https://rg.example.com/projects/svc/environments/env",
                             "api": f"https://rg.example.com/api/v1/releases/{release_id}"}  # no approve link


def test_an_overdue_review_is_mailed_and_posted_once_a_day_until_someone_reviews_it(
        app, web, emergency_env, run_jobs, run_notify_jobs, smtp_server, httpserver):
    from webapp import releases
    from webapp.reconcile import announce_overdue_reviews
    from webapp.transactions import Actor

    httpserver.expect_request("/pager", method="POST").respond_with_data("ok")
    assert add_webhook(web, httpserver.url_for("/pager"), events=["release.review_overdue"]).status_code == 302
    release_id = break_glass(app)
    run_jobs()  # it ran: succeeded, nothing to run
    run_notify_jobs()
    smtp_server.messages.clear()
    due = review_due_at(app, release_id)

    with app.app_context():
        assert announce_overdue_reviews(due - timedelta(minutes=1)) == []
        assert announce_overdue_reviews(due) == [release_id]
        assert announce_overdue_reviews(due + timedelta(hours=23)) == []  # not again the same day
    run_notify_jobs()
    assert recipients(smtp_server) == APPROVERS
    message = smtp_server.inbox.to("admin@example.com")[0]
    assert message["Subject"] == (f"[Releasegate] Review overdue: svc/env (QA): emergency release #{release_id} "
                                  f"was to be reviewed by {due:%Y-%m-%d %H:%M} UTC")
    text = text_part(message)
    assert f"The review of emergency release #{release_id} of svc/env is overdue" in text
    assert REASON in text and '"Release Approval/Reject" permission on svc/env who did not trigger it' in text
    assert links(message) == {"Release page": f"https://rg.example.com/releases/{release_id}"}
    [(request, _)] = httpserver.log
    assert request.headers["X-Releasegate-Event"] == "release.review_overdue"
    body = request.get_json()
    assert (body["by"], body["release"]["id"]) == ("system", release_id)
    assert body["release"]["break_glass"]["review"] is None

    with app.app_context():
        assert announce_overdue_reviews(due + timedelta(days=1)) == [release_id]  # the next day, again
        approver = db.session.scalar(sa.select(User).where(User.username == "approver"))
        releases.review(release_id, Actor(approver, "ui"), "Right call: the fix was the one-line revert.")
        assert announce_overdue_reviews(due + timedelta(days=3)) == []  # reviewed: quiet from now on
    smtp_server.messages.clear()
    run_notify_jobs()
    # The second day's mails were queued before the review and are not worth sending after it.
    assert smtp_server.messages == []
    assert sorted(status for _, status in mailed(app, "review_overdue")) == ["sent"] * 3 + ["skipped"] * 3


def test_the_slack_lines_of_an_emergency_release_and_its_overdue_review():
    from webapp.notify.webhooks import slack_text

    block = {"reason": "checkout <down>", "review": None, "review_due_at": "2026-11-28T12:00:00Z"}
    body = {"event": "release.break_glass", "environment": {"project": "shop", "name": "prod"}, "by": "medic",
            "reason": "emergency release: checkout <down>", "release": {"id": 7, "break_glass": block},
            "links": {"release": "https://rg.example.com/releases/7"}}
    assert slack_text(body) == ("EMERGENCY: shop/prod release #7 was triggered by medic, skipping the hook, the "
                                "approval rules and the change windows: checkout &lt;down&gt;. Review due by "
                                "2026-11-28 12:00 UTC. <https://rg.example.com/releases/7|Open release #7>")
    assert slack_text({**body, "event": "release.review_overdue", "by": "system"}) == (
        "shop/prod emergency release #7 is not reviewed yet: its review was due 2026-11-28 12:00 UTC. Someone who "
        "may approve there, and did not trigger it, must review it. <https://rg.example.com/releases/7|Open "
        "release #7>")
