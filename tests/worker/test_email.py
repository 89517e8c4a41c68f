"""Approval requests by mail, received by a real SMTP server (aiosmtpd): who is asked, what the
mail says (the changes, destructive first; nothing a name or description can forge), the links
it carries, and who is asked under approval rules.

What the triggerer and the admins hear is in test_email_notices.py; sending, retries and the
development outbox in test_email_delivery.py.
"""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from tests.helpers import trigger
from tests.notify_support import html_part, links, text_part
from tests.worker.email_support import (
    WAITS,
    app_config,  # noqa: F401 - a fixture, used by name
    mails,
    pending,
    wait_passes,
)

RESOURCES = [
    {"resourceType": "service", "resourceName": "api", "resourcePath": "api.json", "changeType": "CREATE"},
    {"resourceType": "service", "resourceName": "web", "resourcePath": "web.json", "changeType": "CREATE"},
    {"resourceType": "database", "resourceName": "main", "resourcePath": "db.json", "changeType": "DELETE"},
    {"resourceType": "queue", "resourceName": "jobs", "resourcePath": "q.json", "changeType": "UPDATE_IN_PLACE"},
]


def recipients(smtp_server) -> list[str]:
    return sorted(m["To"].addresses[0].username for m in smtp_server.messages)


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
    assert counts == ["- 1 x DELETE  (destructive)", "- 1 x UPDATE_IN_PLACE", "- 2 x CREATE"]  # as the page counts
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


# -- approval rules: who is asked, what they are told -------------------------------------------------


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
