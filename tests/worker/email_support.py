"""What the mail tests share: mail sent to a real SMTP server (the app_config override), a
release left waiting for approval and its mail sent (pending), the rows of outgoing mail (mails),
and time passing for the retry schedule (wait_passes).

A test module that imports app_config gets the override, as the tests did when they were one
module.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.helpers import trigger

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": 'echo "checking the plan"\necho "prod needs a human"\nexit 2\n'}


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
