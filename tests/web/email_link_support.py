"""What the email-link tests share: mail sent through a real SMTP server (the app_config
override), a release waiting for approval and its mailed links (`mailed`), one waiting under two
approval rules (`ruled`), pressing a button on a link's page (decide), which links were used
(link_use), and a refusal that changes nothing (assert_refused); for the tests that call
email_links itself, a release under two rules with no mail sent (`ruled_release`), a pair of
links issued as a mail's (issue_pair) and a link's row changed (change_link).

A test module that imports the fixtures gets the app_config override with them, as the tests
did when they were one module.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import trigger
from tests.notify_support import links, path, snapshot

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": 'echo "needs a human"\nexit 2\n'}
DESTRUCTIVE = [
    {"resourceType": "service", "resourceName": "api", "resourcePath": "api.json", "changeType": "CREATE"},
    {"resourceType": "database", "resourceName": "legacy", "resourcePath": "db.json", "changeType": "DELETE"},
]


@pytest.fixture()
def app_config(app_config, smtp_server):
    return {**app_config, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port,
            "BASE_URL": "https://rg.example.com"}


@pytest.fixture()
def mailed(api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    """A release dev triggered, pending approval, whose mails were received: mailed.link(who, "Approve")."""
    new_environment(WAITS)
    release_id = trigger(api, "dev", resources=DESTRUCTIVE, description="Retire the legacy database")
    run_jobs()
    run_notify_jobs()

    class Mailed:
        id = release_id

        @staticmethod
        def link(who: str, label: str = "Approve") -> str:
            [message] = smtp_server.inbox.to(f"{who}@example.com")
            return path(links(message)[label])

    return Mailed


def decide(client, link: str, comment: str = "", csrf: str | None = None, action: str = "approve"):
    """Press Approve (or `action`) on the confirmation page of `link`."""
    return client.post(link, data={"csrf_token": csrf or client.csrf, "comment": comment, "action": action})


def link_use(app, release_id: int, who: str) -> dict[str, bool]:
    """{"approve": used?, "reject": used?} for the links mailed to `who` about the release."""
    from webapp.extensions import db
    from webapp.models import EmailLink, User

    with app.app_context():
        rows = db.session.execute(sa.select(EmailLink.action, EmailLink.used_at).join(User).where(
            User.username == who, EmailLink.release_id == release_id)).all()
        return {action: used is not None for action, used in rows}


def assert_refused(app, client, link: str, kind: str, status: int, sentence: str, action: str = "approve") -> None:
    before = snapshot(app)
    page = client.get(link)
    assert page.status_code == status and f'data-refusal="{kind}"' in page.text and sentence in page.text
    posted = decide(client, link, "trying anyway", action=action)
    assert posted.status_code == status, posted.text
    assert snapshot(app) == before


@pytest.fixture()
def ruled(app, api, people, new_environment, run_jobs, run_notify_jobs, smtp_server):
    """A release dev triggered on svc/env, whose rules need sre (alice) and dba (bob or carol), mailed."""
    from tests.rules_support import two_rules

    two_rules(app, people, new_environment)
    release_id = trigger(api, "dev")
    run_jobs()
    run_notify_jobs()

    class Ruled:
        id = release_id

        @staticmethod
        def link(who: str, label: str = "Approve") -> str:
            first = smtp_server.inbox.to(f"{who}@example.com")[0]  # the request sent when it began to wait
            return path(links(first)[label])

    return Ruled



# -- links issued directly, without mail (email_links called as functions) -------------------------

@pytest.fixture()
def ruled_release(app, api, people, new_environment, run_jobs):
    """A release dev triggered on svc/env, pending approval, whose rules need sre (alice) and dba
    (bob or carol); approver and admin may decide it but count for neither rule. No mail is sent."""
    from tests.helpers import state
    from tests.rules_support import two_rules

    two_rules(app, people, new_environment)
    release_id = trigger(api, "dev")
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL"
    return release_id


def user(name: str):
    from webapp.extensions import db
    from webapp.models import User

    return db.session.scalar(sa.select(User).where(User.username == name))


def issue_pair(who: str, release_id: int, now=None) -> tuple[str, str]:
    """The Approve and Reject tokens of one mail to `who` about the release, issued and committed
    (in an app context) as compose.py issues them: one mail, one moment."""
    from webapp.extensions import db
    from webapp.models import OutgoingMail, utcnow
    from webapp.notify import email_links

    to, now = user(who), now or utcnow()
    sent = OutgoingMail(kind="approval_request", user_id=to.id, to_address=to.email, release_id=release_id)
    db.session.add(sent)
    db.session.flush()
    tokens = tuple(email_links.issue(to.id, release_id, action, mail_id=sent.id, now=now)
                   for action in ("approve", "reject"))
    db.session.commit()
    return tokens


def change_link(token: str, **values) -> None:
    """Change the stored row of a link (in an app context) and commit."""
    from webapp.extensions import db
    from webapp.models import EmailLink
    from webapp.notify.email_links import token_hash

    db.session.execute(sa.update(EmailLink).where(EmailLink.token_hash == token_hash(token)).values(**values))
    db.session.commit()
