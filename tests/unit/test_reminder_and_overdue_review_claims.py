"""A reminder of a pending release and the announcement of an overdue review are each claimed
with a compare-and-set on when the last one was (releases.remind, announce_overdue_review): the
caller that read the current value records it, once; one that read another value, or a release
no longer owing it, records nothing. Each records an audit event whose sentence people are sent.

Time is passed in, never read from the clock."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from tests.unit.decisions_support import (
    as_,
    events,
    finished_emergency,  # noqa: F401 - a fixture, used by name
    row,
    waiting,  # noqa: F401 - a fixture, used by name
)
from webapp import releases
from webapp.extensions import db
from webapp.models import Release

BEGAN = datetime(2026, 12, 7, 9, 30)


def set_release(release_id: int, **values) -> None:
    db.session.execute(sa.update(Release).where(Release.id == release_id).values(**values))
    db.session.commit()


def said(release_id: int, action: str) -> list[tuple]:
    return [(e.actor_id, e.via, e.reason, e.details) for e in events(release_id, action)]


# -- reminders ---------------------------------------------------------------------------------------

def test_the_first_reminder_is_recorded_once_with_how_long_the_release_waited(app, api, waiting):
    assert api("admin").patch("/api/v1/projects/svc/environments/env", json={"reminder_hours": 2}).status_code == 200
    now = BEGAN + timedelta(hours=2, minutes=30, seconds=1)  # 2.5003 h, said rounded
    with app.app_context():
        set_release(waiting, pending_since=BEGAN)
        assert releases.remind(waiting, None, now) is True
        assert row(waiting).reminded_at == now
        assert said(waiting, "reminder") == [(None, "system", "reminder: waiting for approval for 3 h", {"hours": 2})]
        assert releases.remind(waiting, None, now + timedelta(minutes=1)) is False  # another reconciler, too late
        assert row(waiting).reminded_at == now and len(said(waiting, "reminder")) == 1


def test_the_next_reminder_is_claimed_only_by_whoever_read_the_last_one(app, waiting):
    first, second = BEGAN + timedelta(hours=4), BEGAN + timedelta(hours=8)
    with app.app_context():
        set_release(waiting, pending_since=BEGAN, reminded_at=first)
        assert releases.remind(waiting, None, second) is False  # read before the first reminder
        assert releases.remind(waiting, first - timedelta(seconds=1), second) is False
        assert row(waiting).reminded_at == first and said(waiting, "reminder") == []
        assert releases.remind(waiting, first, second) is True
        assert row(waiting).reminded_at == second
        assert [reason for _, _, reason, _ in said(waiting, "reminder")] == ["reminder: waiting for approval for 8 h"]
        assert releases.remind(waiting, first, second + timedelta(hours=4)) is False


def test_a_reminder_is_recorded_for_its_own_release_only(app, api, new_environment, run_jobs):
    from tests.helpers import trigger
    from tests.unit.decisions_support import WAITS

    new_environment(WAITS)
    new_environment(WAITS, name="other")
    first, second = trigger(api, "dev", path="svc/env"), trigger(api, "dev", path="svc/other")
    run_jobs()
    with app.app_context():
        assert releases.remind(first, None, BEGAN) is True
        assert (row(first).reminded_at, row(second).reminded_at) == (BEGAN, None)
        assert said(second, "reminder") == []


def test_a_release_that_no_longer_waits_is_not_reminded_of(app, waiting):
    with app.app_context():
        set_release(waiting, pending_since=BEGAN)
        releases.reject(waiting, as_("approver"), "no")
        assert releases.remind(waiting, None, BEGAN + timedelta(hours=5)) is False
        assert row(waiting).reminded_at is None and said(waiting, "reminder") == []


def test_a_reminder_of_a_release_that_never_said_when_it_began_waiting_counts_no_hours(app, waiting):
    with app.app_context():
        set_release(waiting, pending_since=None)
        assert releases.remind(waiting, None, BEGAN) is True
        assert [reason for _, _, reason, _ in said(waiting, "reminder")] == ["reminder: waiting for approval for 0 h"]


# -- overdue reviews ---------------------------------------------------------------------------------

def test_an_overdue_review_is_announced_once_with_when_it_was_due(app, finished_emergency):
    now = BEGAN + timedelta(hours=1)
    with app.app_context():
        set_release(finished_emergency, review_due_at=BEGAN)
        assert releases.announce_overdue_review(finished_emergency, None, now) is True
        assert row(finished_emergency).review_announced_at == now
        assert said(finished_emergency, "review_overdue") == [
            (None, "system", f"the review of emergency release #{finished_emergency} was due 2026-12-07 09:30 UTC",
             {"review_due_at": "2026-12-07T09:30:00Z"})]
        assert releases.announce_overdue_review(finished_emergency, None, now + timedelta(minutes=1)) is False
        assert row(finished_emergency).review_announced_at == now
        assert len(said(finished_emergency, "review_overdue")) == 1


def test_the_next_announcement_is_claimed_only_by_whoever_read_the_last_one(app, finished_emergency):
    first, second = BEGAN + timedelta(hours=1), BEGAN + timedelta(days=1, hours=1)
    with app.app_context():
        set_release(finished_emergency, review_due_at=BEGAN, review_announced_at=first)
        assert releases.announce_overdue_review(finished_emergency, None, second) is False
        assert releases.announce_overdue_review(finished_emergency, first + timedelta(seconds=1), second) is False
        assert said(finished_emergency, "review_overdue") == []
        assert releases.announce_overdue_review(finished_emergency, first, second) is True
        assert row(finished_emergency).review_announced_at == second
        assert len(said(finished_emergency, "review_overdue")) == 1


def test_a_reviewed_emergency_release_is_announced_no_more(app, finished_emergency):
    first = BEGAN + timedelta(hours=1)
    with app.app_context():
        set_release(finished_emergency, review_due_at=BEGAN, review_announced_at=first)
        releases.review(finished_emergency, as_("approver"), "right call")
        assert releases.announce_overdue_review(finished_emergency, first, first + timedelta(days=1)) is False
        assert row(finished_emergency).review_announced_at == first
        assert said(finished_emergency, "review_overdue") == []
