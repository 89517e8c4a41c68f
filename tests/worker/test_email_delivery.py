"""Sending mail: each mail once however often its event is announced, a failed send retried
with backoff and then given up (its links then do not work), STARTTLS and login, a wrong SMTP
password; and without MAIL_SERVER, the log and the development outbox.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.worker.email_support import (
    WAITS,
    app_config,  # noqa: F401 - a fixture, used by name
    mails,
    pending,
    wait_passes,
)


def test_announcing_an_event_twice_sends_each_mail_once(app, api, new_environment, run_jobs, run_notify_jobs,
                                                         smtp_server):
    from webapp.extensions import db
    from webapp.models import AuditEvent
    from webapp.notify import mail

    new_environment(WAITS)
    pending(api, run_jobs, run_notify_jobs)
    assert len(smtp_server.messages) == 2
    with app.app_context():
        event_id = db.session.scalar(sa.select(AuditEvent.id).where(AuditEvent.to_state == "PENDING_APPROVAL"))
        assert mail.announce(event_id) == {"mails": [], "deliveries": [], "slack": []}
    run_notify_jobs()
    assert len(smtp_server.messages) == 2


def test_a_failed_send_is_retried_with_backoff_shown_to_admins_and_never_holds_the_release(
        app, api, web, new_environment, run_jobs, run_notify_jobs, smtp_server):
    from webapp.models import OutgoingMail, utcnow
    from webapp.notify import mail

    app.config["NOTIFY_RETRY_SECONDS"] = (60, 600)
    smtp_server.inbox.refuse = 2  # the first send of each of the two mails is refused
    new_environment(WAITS)
    release_id = pending(api, run_jobs, run_notify_jobs)
    assert smtp_server.messages == []
    [first, second] = mails(app)
    assert (first.status, first.attempts) == ("retrying", 1)
    assert "451" in first.last_error
    assert timedelta(seconds=55) < first.next_attempt_at - utcnow() <= timedelta(seconds=60)

    page = web("admin").get("/admin/mail")
    assert page.status_code == 200
    assert "retrying" in page.text and "451" in page.text

    # The release goes on regardless: approving it through the API works meanwhile.
    assert api("approver").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200
    run_jobs()

    with app.app_context():  # nothing is due yet; once the wait has passed, both are
        assert mail.resume_due() == {"mail": [], "webhook": [], "slack": []}
        wait_passes(OutgoingMail)
        assert sorted(mail.resume_due()["mail"]) == [first.id, second.id]
    run_notify_jobs()
    statuses = {m.id: (m.status, m.attempts) for m in mails(app, kind="approval_request")}
    # The release is no longer pending, so the approval requests are not worth sending any more.
    assert statuses == {first.id: ("skipped", 2), second.id: ("skipped", 2)}


def test_a_send_that_keeps_failing_gives_up_after_the_schedule(app, api, new_environment, run_jobs,
                                                                run_notify_jobs, smtp_server):
    from webapp.models import OutgoingMail
    from webapp.notify import mail

    app.config["NOTIFY_RETRY_SECONDS"] = (1,)
    smtp_server.inbox.refuse = 100
    new_environment(WAITS)
    pending(api, run_jobs, run_notify_jobs)
    with app.app_context():
        wait_passes(OutgoingMail)
        mail.resume_due()
    run_notify_jobs()
    assert {(m.status, m.attempts) for m in mails(app)} == {("failed", 2)}


def test_links_of_a_mail_that_could_not_be_sent_do_not_work(app, api, new_environment, run_jobs,
                                                            run_notify_jobs, smtp_server):
    from webapp.extensions import db
    from webapp.models import EmailLink

    smtp_server.inbox.refuse = 100
    new_environment(WAITS)
    pending(api, run_jobs, run_notify_jobs)
    with app.app_context():
        rows = db.session.scalars(sa.select(EmailLink)).all()
        assert rows and all(row.revoked_at is not None for row in rows)


def test_starttls_and_login_are_used_when_configured(app, api, new_environment, run_jobs, run_notify_jobs,
                                                     monkeypatch, tmp_path):
    import trustme

    from tests.notify_support import PasswordCheck, SmtpServer

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    server_context = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the app trusts our test authority, as a system CA
    seen: list[str] = []
    with SmtpServer(tls_context=server_context, require_starttls=True, auth_require_tls=True,
                    authenticator=PasswordCheck("mailer", "s3cret-pass", seen)) as server:
        app.config.update(MAIL_PORT=server.port, MAIL_USE_TLS=True, MAIL_USERNAME="mailer",
                          MAIL_PASSWORD="s3cret-pass")
        new_environment(WAITS)
        pending(api, run_jobs, run_notify_jobs)
        assert len(server.messages) == 2
        assert "mailer" in seen


def test_a_wrong_smtp_password_is_a_failed_send_not_a_crash(app, api, new_environment, run_jobs,
                                                             run_notify_jobs):
    from tests.notify_support import PasswordCheck, SmtpServer

    with SmtpServer(auth_require_tls=False, authenticator=PasswordCheck("mailer", "right", [])) as server:
        app.config.update(MAIL_PORT=server.port, MAIL_USERNAME="mailer", MAIL_PASSWORD="wrong")
        new_environment(WAITS)
        pending(api, run_jobs, run_notify_jobs)
        assert server.messages == []
    assert {m.status for m in mails(app)} == {"retrying"}
    assert all("SMTPAuthenticationError" in m.last_error for m in mails(app))


# -- without MAIL_SERVER: the log and the outbox ----------------------------------------------------

@pytest.fixture()
def outbox_app(app):
    app.config["MAIL_SERVER"] = ""
    return app


def test_without_a_mail_server_mail_goes_to_the_log_and_the_outbox(outbox_app, api, web, new_environment,
                                                                   run_jobs, run_notify_jobs, smtp_server,
                                                                   caplog):
    new_environment(WAITS)
    with caplog.at_level(logging.INFO, logger="webapp.notify.mail"):
        release_id = pending(api, run_jobs, run_notify_jobs)
    assert smtp_server.messages == []
    assert sum("kept in the outbox" in record.getMessage() for record in caplog.records) == 2
    rows = mails(outbox_app)
    assert {m.status for m in rows} == {"outbox"}

    admin = web("admin")
    page = admin.get("/admin/outbox")
    assert page.status_code == 200
    assert f"release #{release_id} needs your approval" in page.text
    mail_to_approver = next(m for m in rows if m.to_address == "approver@example.com")
    page = admin.get(f"/admin/outbox/{mail_to_approver.id}")
    assert page.status_code == 200
    assert "/email/links/" in page.text and ">Approve</a>" in page.text
    html = admin.get(f"/admin/outbox/{mail_to_approver.id}/html")
    assert html.status_code == 200 and "Approve</a>" in html.text
    assert "default-src 'none'" in html.headers["Content-Security-Policy"]


def test_the_outbox_and_mail_log_are_for_admins_only(outbox_app, app, web, people):
    people.add("usermanager", "manage_users")
    for path in ("/admin/outbox", "/admin/mail"):
        assert web("admin").get(path).status_code == 200
        assert web("member").get(path).status_code == 403
        assert web("usermanager").get(path).status_code == 403
        anonymous = app.test_client().get(path)
        assert anonymous.status_code == 302 and "/sign-in?next=" in anonymous.headers["Location"]


def test_the_outbox_is_off_whenever_a_mail_server_is_set(app, web):
    assert app.config["MAIL_SERVER"]
    admin = web("admin")
    assert admin.get("/admin/outbox").status_code == 404
    assert admin.get("/admin/outbox/1").status_code == 404
    assert admin.get("/admin/mail").status_code == 200  # the log of what was sent stays
