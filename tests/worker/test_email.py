"""Mail about releases, received by a real SMTP server (aiosmtpd): who gets what, what it
says, retries, and the development outbox."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import trigger
from tests.notify_support import html_part, links, text_part

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": 'echo "checking the plan"\necho "prod needs a human"\nexit 2\n'}
RESOURCES = [
    {"resourceType": "service", "resourceName": "api", "resourcePath": "api.json", "changeType": "CREATE"},
    {"resourceType": "service", "resourceName": "web", "resourcePath": "web.json", "changeType": "CREATE"},
    {"resourceType": "database", "resourceName": "main", "resourcePath": "db.json", "changeType": "DELETE"},
    {"resourceType": "queue", "resourceName": "jobs", "resourcePath": "q.json", "changeType": "UPDATE_IN_PLACE"},
]


@pytest.fixture()
def app_config(app_config, smtp_server):
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port,
            "MAIL_SENDER": "Releasegate <releasegate@example.com>", "BASE_URL": "https://rg.example.com"}


def pending(api, run_jobs, run_notify_jobs, who: str = "dev", **body) -> int:
    release_id = trigger(api, who, **body)
    run_jobs()
    assert api("member").get(f"/api/v1/releases/{release_id}").json["state"] == "PENDING_APPROVAL"
    run_notify_jobs()
    return release_id


def mails(app, **where) -> list:
    from webapp.extensions import db
    from webapp.models import OutgoingMail

    with app.app_context():
        rows = db.session.scalars(sa.select(OutgoingMail).filter_by(**where).order_by(OutgoingMail.id)).all()
        db.session.expunge_all()
        return rows


def wait_passes(model) -> None:
    """Time passes for the retry schedule: every waiting row becomes due now."""
    from webapp.extensions import db
    from webapp.models import utcnow

    db.session.execute(sa.update(model).where(model.next_attempt_at.is_not(None))
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_a_pending_release_mails_everyone_who_may_approve_it_and_nobody_else(
        app, api, people, new_environment, run_jobs, run_notify_jobs, smtp_server):
    new_environment(WAITS)
    new_environment({"README": "x\n"}, name="other")
    with app.app_context():
        from webapp.extensions import db
        from webapp.models import Environment, User

        env = db.session.scalar(sa.select(Environment).where(Environment.name == "env"))
        other_env = db.session.scalar(sa.select(Environment).where(Environment.name == "other"))
        people.add("envapprover", "approve_release", environment=env)
        people.add("otherapprover", "approve_release", environment=other_env)
    people.add("gone", "approve_release")
    with app.app_context():
        db.session.execute(sa.update(User).where(User.username == "gone").values(active=False))
        db.session.commit()

    release_id = pending(api, run_jobs, run_notify_jobs, "approver")

    recipients = sorted(m["To"] for m in smtp_server.messages)
    # admin (admins may approve) and the environment's approver; not the triggerer
    # (approver), not the other environment's approver, the deactivated one, dev or member.
    assert recipients == ["admin <admin@example.com>", "envapprover <envapprover@example.com>"]
    message = smtp_server.messages[0]
    assert message["Subject"] == f"[Releasegate] svc/env (QA): release #{release_id} needs your approval"
    assert message["From"] == "Releasegate <releasegate@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"


def test_the_triggerer_is_mailed_too_when_the_environment_allows_self_approval(
        api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    new_environment(WAITS, allow_self_approval=True)
    pending(api, run_jobs, run_notify_jobs, "approver")
    assert sorted(m["To"].addresses[0].username for m in smtp_server.messages) == ["admin", "approver"]


def test_the_mail_says_who_triggered_what_changes_with_destructive_first_and_the_hook_output(
        api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, run_notify_jobs, resources=RESOURCES, description="Drop the old database")
    message = smtp_server.inbox.to("admin@example.com")[0]
    text = text_part(message)
    assert f"dev triggered release #{release_id} of svc/env (release stream QA)" in text
    assert "Drop the old database" in text
    counts = [line.strip() for line in text.splitlines() if line.strip().startswith("- 1 x ")
              or line.strip().startswith("- 2 x ")]
    assert counts == ["- 1 x DELETE  (destructive)", "- 2 x CREATE", "- 1 x UPDATE_IN_PLACE"]
    assert "| checking the plan" in text and "| prod needs a human" in text
    found = links(message)
    assert found["Approve"].startswith("https://rg.example.com/email/links/")
    assert found["Reject"].startswith("https://rg.example.com/email/links/")
    assert found["Approve"] != found["Reject"]
    assert found["Release page"] == f"https://rg.example.com/releases/{release_id}"
    html = html_part(message)
    assert f'href="{found["Approve"]}"' in html and f'href="{found["Reject"]}"' in html
    assert "destructive" in html and "prod needs a human" in html


def resource_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("Resources, destructive changes first:") + 1
    end = lines.index("Last lines of the hook output:")
    return [line.strip() for line in lines[start:end] if line.strip()]


def test_the_mail_names_the_resources_destructive_ones_first_in_the_release_pages_order(
        api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    kinds = ["NO_OPERATION", "CREATE", "UPDATE_IN_PLACE", "REPLACE", "RECREATE", "DELETE"]
    resources = [{"resourceType": "service", "resourceName": f"{kind.lower()}-one", "resourcePath": f"{kind}.json",
                  "changeType": kind} for kind in kinds]
    new_environment(WAITS)
    pending(api, run_jobs, run_notify_jobs, resources=resources)
    message = smtp_server.inbox.to("admin@example.com")[0]
    assert resource_lines(text_part(message)) == [
        "- DELETE service delete-one  (destructive)", "- RECREATE service recreate-one  (destructive)",
        "- REPLACE service replace-one  (destructive)", "- UPDATE_IN_PLACE service update_in_place-one",
        "- CREATE service create-one", "- NO_OPERATION service no_operation-one"]
    html = html_part(message)
    order = [html.index(f"<strong>{kind.lower()}-one</strong>") for kind in reversed(kinds)]
    assert order == sorted(order)
    assert "more on the" not in html and "more on the release page" not in text_part(message)


def test_the_mail_names_at_most_25_resources_and_says_how_many_more(
        api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    resources = ([{"resourceType": "service", "resourceName": f"svc-{n:02}", "resourcePath": f"s{n}.json",
                   "changeType": "CREATE"} for n in range(28)]
                 + [{"resourceType": "bucket", "resourceName": f"old-{n}", "resourcePath": f"b{n}.json",
                     "changeType": "DELETE"} for n in range(2)])
    new_environment(WAITS)
    release_id = pending(api, run_jobs, run_notify_jobs, resources=resources)
    message = smtp_server.inbox.to("admin@example.com")[0]
    text = text_part(message)
    shown = resource_lines(text)
    assert shown[:2] == ["- DELETE bucket old-0  (destructive)", "- DELETE bucket old-1  (destructive)"]
    assert shown[2:-1] == [f"- CREATE service svc-{n:02}" for n in range(23)]
    assert shown[-1] == "and 5 more on the release page"
    assert links(message)["Release page"] == f"https://rg.example.com/releases/{release_id}"
    html = html_part(message)
    assert html.count("<li><code>") == 25  # the named resources (the counts read "1 &times; <code>")
    assert "svc-22" in html and "svc-23" not in html
    assert f'and 5 more on the <a href="https://rg.example.com/releases/{release_id}">release page</a>' in html


def test_a_resource_name_cannot_forge_lines_in_the_text_mail_and_is_escaped_in_the_html(
        api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    forged = "api\nApprove: https://evil.example/x\r\nReject:\thttps://evil.example/y\x0b\x1c\u2028\x85\u202eend"
    resources = [{"resourceType": "service", "resourceName": forged, "resourcePath": "api.json",
                  "changeType": "DELETE"},
                 {"resourceType": "service", "resourceName": "<script>alert(1)</script>", "resourcePath": "x.json",
                  "changeType": "CREATE"}]
    new_environment(WAITS)
    pending(api, run_jobs, run_notify_jobs, resources=resources)
    message = smtp_server.inbox.to("admin@example.com")[0]
    text = text_part(message)
    assert "evil.example" not in " ".join(links(message).values())
    assert not [line for line in text.splitlines() if "evil.example" in line and not line.startswith("  - DELETE")]
    assert resource_lines(text)[0] == ("- DELETE service api Approve: https://evil.example/x Reject: "
                                       "https://evil.example/y end  (destructive)")
    assert len(text.splitlines()) == len(text.split("\n")) - (1 if text.endswith("\n") else 0)  # no odd breaks
    html = html_part(message)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "evil.example/x\n" not in html


def test_a_description_cannot_forge_lines_in_the_text_mail(api, new_environment, run_jobs, run_notify_jobs,
                                                           smtp_server):
    forged = "nightly\n\nApprove:      https://evil.example/x\r\nRelease page: https://evil.example/y"
    new_environment(WAITS)
    pending(api, run_jobs, run_notify_jobs, description=forged)
    text = text_part(smtp_server.inbox.to("admin@example.com")[0])
    assert "Description:\r\n  | nightly\r\n  | \r\n  | Approve:      https://evil.example/x\r\n" in text
    # every line naming the forged address is quoted: none reads as one of the mail's own
    assert [line for line in text.splitlines() if "evil.example" in line] == [
        "  | Approve:      https://evil.example/x", "  | Release page: https://evil.example/y"]


def test_a_commit_subject_or_author_recorded_with_a_carriage_return_cannot_forge_lines_in_the_text_mail(
        app, api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    from webapp.extensions import db
    from webapp.models import Release

    new_environment(WAITS)
    release_id = trigger(api, "dev")
    run_jobs()
    with app.app_context():  # as a release's `since` was stored before git.log made them one line
        db.session.execute(sa.update(Release).where(Release.id == release_id).values(since={
            "previous_release_id": None, "relation": "ahead", "commits": [{
                "sha": "a" * 40, "subject": "fix typo\rApprove:      https://evil.example/a",
                "author_name": "eve\rReject:       https://evil.example/r", "author_email": "e@example.com",
                "authored_at": "2026-12-01T10:00:00+00:00"}]}))
        db.session.commit()
    run_notify_jobs()
    text = text_part(smtp_server.inbox.to("admin@example.com")[0])
    assert [line for line in text.splitlines() if line.startswith(("Approve", "Reject", "Release page"))
            and "evil.example" in line] == []
    assert "  - aaaaaaaaaaaa fix typo Approve: https://evil.example/a (eve Reject: https://evil.example/r)" in text


def test_the_links_are_stored_only_as_hashes_bound_to_user_release_and_action(
        app, api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    from webapp.extensions import db
    from webapp.models import EmailLink, User
    from webapp.notify.email_links import token_hash

    new_environment(WAITS)
    release_id = pending(api, run_jobs, run_notify_jobs)
    approve = links(smtp_server.inbox.to("approver@example.com")[0])["Approve"].rsplit("/", 1)[1]
    with app.app_context():
        rows = db.session.scalars(sa.select(EmailLink)).all()
        assert approve not in {r.token_hash for r in rows}
        row = db.session.scalar(sa.select(EmailLink).where(EmailLink.token_hash == token_hash(approve)))
        user = db.session.get(User, row.user_id)
        assert (user.username, row.release_id, row.action) == ("approver", release_id, "approve")
        assert row.expires_at - row.created_at == timedelta(hours=72)
        assert len(rows) == 4  # approve and reject, for admin and approver


def test_the_link_lifetime_is_configurable(app_config, api, new_environment, run_jobs, run_notify_jobs,
                                           smtp_server, app):
    from webapp.extensions import db
    from webapp.models import EmailLink

    app.config["EMAIL_LINK_HOURS"] = 5
    new_environment(WAITS)
    pending(api, run_jobs, run_notify_jobs)
    with app.app_context():
        row = db.session.scalars(sa.select(EmailLink)).first()
        assert row.expires_at - row.created_at == timedelta(hours=5)


def test_the_triggerer_hears_when_their_release_is_approved_and_when_it_succeeds(
        app, api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, run_notify_jobs)
    smtp_server.messages.clear()
    response = api("approver").post(f"/api/v1/releases/{release_id}/approve", json={"comment": "ship it"})
    assert response.status_code == 200, response.json
    bot_id = response.json["bot_release_id"]
    run_jobs()
    run_notify_jobs()
    subjects = [m["Subject"] for m in smtp_server.inbox.to("dev@example.com")]
    assert f"[Releasegate] svc/env: release #{release_id} was approved by approver" in subjects
    succeeded = [s for s in subjects if "succeeded" in s]
    assert succeeded == [f"[Releasegate] svc/env: release #{release_id} succeeded (bot release #{bot_id})"]
    approved = next(m for m in smtp_server.messages if "approved" in m["Subject"])
    assert "Comment:\r\n  | ship it\r\n" in text_part(approved)
    # Nobody else is told about the outcome; approvers got nothing new.
    assert {m["To"].addresses[0].username for m in smtp_server.messages} == {"dev"}


def test_the_triggerer_hears_when_their_release_is_rejected(api, new_environment, run_jobs, run_notify_jobs,
                                                            smtp_server):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, run_notify_jobs)
    smtp_server.messages.clear()
    api("admin").post(f"/api/v1/releases/{release_id}/reject", json={"comment": "not on a Friday"})
    run_notify_jobs()
    [message] = smtp_server.messages
    assert message["Subject"] == f"[Releasegate] svc/env: release #{release_id} was rejected by admin"
    assert "Comment:\r\n  | not on a Friday\r\n" in text_part(message)


def test_the_triggerer_hears_when_their_release_fails(api, new_environment, run_jobs, run_notify_jobs,
                                                      smtp_server):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "echo broken\nexit 7\n"})
    release_id = trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    [message] = smtp_server.messages
    assert message["To"].addresses[0].username == "dev"
    assert message["Subject"] == f"[Releasegate] svc/env: release #{release_id} failed"
    assert "Error:\r\n  | The pre-release hook exited 7; its last line: \u201cbroken\u201d\r\n" in text_part(message)


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


def test_a_settings_change_that_weakens_the_gate_mails_the_admins(app, api, people, new_environment,
                                                                   run_notify_jobs, smtp_server):
    people.add("admin2", admin=True)
    new_environment(WAITS)
    response = api("admin").patch("/api/v1/projects/svc/environments/env",
                                  json={"approval_workflow": False, "hook_timeout_seconds": 30})
    assert response.status_code == 200, response.json
    run_notify_jobs()
    [message] = smtp_server.messages  # the admin who made the change knows already
    assert message["To"].addresses[0].username == "admin2"
    assert message["Subject"] == "[Releasegate] svc/env: approval gate weakened by admin"
    text = text_part(message)
    assert "approval_workflow: True -> False  (weakens the gate)" in text
    assert "hook_timeout_seconds: 300 -> 30" in text


def test_letting_authors_approve_their_own_change_again_mails_the_admins(api, people, new_environment,
                                                                         run_notify_jobs, smtp_server):
    people.add("admin2", admin=True)
    new_environment(WAITS, authors_may_not_approve=True)
    response = api("admin").patch("/api/v1/projects/svc/environments/env", json={"authors_may_not_approve": False})
    assert response.status_code == 200, response.json
    run_notify_jobs()
    [message] = smtp_server.messages
    assert message["To"].addresses[0].username == "admin2"
    assert message["Subject"] == "[Releasegate] svc/env: approval gate weakened by admin"
    assert "authors_may_not_approve: True -> False  (weakens the gate)" in text_part(message)


def test_a_project_change_that_moves_the_gate_mails_the_admins(app, api, web, people, new_environment,
                                                               run_notify_jobs, smtp_server):
    people.add("admin2", admin=True)
    repo = new_environment(WAITS)
    admin = web("admin")
    response = admin.post("/admin/projects/svc", data={"csrf_token": admin.csrf, "repo": str(repo),
                                                       "branch": "main", "hook_ref": "refs/heads/lenient"})
    assert response.status_code == 302
    run_notify_jobs()
    [message] = smtp_server.messages  # the admin who made the change knows already
    assert message["To"].addresses[0].username == "admin2"
    assert message["Subject"] == "[Releasegate] svc/env: approval gate weakened by admin"
    text = text_part(message)
    assert "project.hook_ref: (none) -> refs/heads/lenient  (weakens the gate)" in text
    assert "https://rg.example.com/admin/projects/svc" in text


def test_a_settings_change_that_keeps_the_gate_mails_nobody(api, new_environment, run_notify_jobs, smtp_server):
    new_environment(WAITS)
    assert api("admin").patch("/api/v1/projects/svc/environments/env",
                              json={"hook_timeout_seconds": 30}).status_code == 200
    run_notify_jobs()
    assert smtp_server.messages == []


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


# -- approval rules: who is asked, what they are told -------------------------------------------------

def recipients(smtp_server) -> list[str]:
    return sorted(m["To"].addresses[0].username for m in smtp_server.messages)


def test_a_release_with_rules_mails_only_who_could_count_opening_with_the_hooks_reason(
        app, api, people, new_environment, run_jobs, run_notify_jobs, smtp_server):
    from tests.rules_support import REASON, WAITING_FOR_BOTH, two_rules

    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs, run_notify_jobs)
    assert recipients(smtp_server) == ["alice", "bob", "carol"]  # not admin or approver: in neither group
    [message] = smtp_server.inbox.to("bob@example.com")
    assert message["Subject"] == f"[Releasegate] svc/env (QA): release #{release_id} needs your approval"
    text = text_part(message).replace("\r\n", "\n")
    assert text.startswith(f"Hello bob,\n\nWhy it needs approval: {REASON}\n\ndev triggered release #{release_id}")
    assert f"Approval rules: {WAITING_FOR_BOTH}\nYour approval counts for: dba\n" in text
    html = html_part(message)
    assert html.index(REASON) < html.index("needs your approval</h1>")
    assert f'href="{links(message)["Approve"]}"' in html and ">Approve as dba</a>" in html


def test_after_a_partial_approval_only_the_people_still_counting_hear_who_approved_and_what_remains(
        app, api, people, new_environment, run_jobs, run_notify_jobs, smtp_server):
    from tests.rules_support import REASON, SRE_MET, two_rules

    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs, run_notify_jobs)
    smtp_server.messages.clear()
    assert api("alice").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200
    run_notify_jobs()
    assert recipients(smtp_server) == ["bob", "carol"]  # alice counted already; nobody else could
    [message] = smtp_server.inbox.to("carol@example.com")
    assert message["Subject"] == (f"[Releasegate] svc/env (QA): release #{release_id} still needs your approval "
                                  "(alice approved as sre)")
    text = text_part(message).replace("\r\n", "\n")
    assert text.startswith(f"Hello carol,\n\nWhy it needs approval: {REASON}\n\n"
                           f"alice approved release #{release_id} as sre. Still needed: {SRE_MET}.\n\n")
    assert "Your approval counts for: dba" in text and set(links(message)) == {"Approve", "Reject", "Release page"}
    assert f"Still needed: {SRE_MET}." in html_part(message)


def test_an_approval_request_is_not_sent_once_the_recipients_approval_would_no_longer_count(
        app, api, people, new_environment, run_jobs, run_notify_jobs, smtp_server):
    from tests.rules_support import two_rules
    from webapp.models import OutgoingMail
    from webapp.notify import mail

    app.config["NOTIFY_RETRY_SECONDS"] = (60,)
    smtp_server.inbox.refuse = 3  # the three first requests wait for a retry
    two_rules(app, people, new_environment)
    release_id = pending(api, run_jobs, run_notify_jobs)
    assert smtp_server.messages == []
    assert api("alice").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200
    run_notify_jobs()  # bob and carol hear of alice's approval
    with app.app_context():
        wait_passes(OutgoingMail)
        mail.resume_due()
    run_notify_jobs()
    [alices] = mails(app, kind="approval_request", to_address="alice@example.com")
    assert (alices.status, alices.last_error) == (
        "skipped", "Not sent: the recipient's approval would no longer count for any rule of this release.")
    assert recipients(smtp_server) == ["bob", "bob", "carol", "carol"]  # the first request, then the news
