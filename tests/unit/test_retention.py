"""Old data stays bounded: the output of releases finished long ago is replaced by a note in
bounded batches, and old mail, webhook deliveries and spent email links are deleted, while
live releases, decisions and the audit trail are kept.

Retention's rounds and RQ job TTLs are in test_retention_rounds.py; the release list and the
dashboard reading through indexes in test_release_list_indexes.py.
"""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from redis import Redis

from tests.unit.retention_support import (
    NOTE_90,
    NOW,
    OLD,
    RECENT,
    add_mail,
    add_release,
    outputs,
    recorded_statements,
    world,  # noqa: F401 - a fixture, used by name
)
from webapp import retention
from webapp.extensions import db
from webapp.models import AuditEvent, Decision, EmailLink, OutgoingMail, Release, WebhookDelivery


def release_ids_in(parameters) -> list:
    values = parameters.values() if isinstance(parameters, dict) else parameters
    flat = []
    for value in values:
        flat.extend(value if isinstance(value, list | tuple) else [value])
    return [value for value in flat if isinstance(value, int)]


# -- hook and apply output --------------------------------------------------------------------------

def test_output_of_releases_finished_long_ago_is_replaced_by_a_note_and_recent_output_kept(app, world):
    with app.app_context():
        old = add_release(world)
        old_without_log = add_release(world, exec_output="")
        recent = add_release(world, finished_at=RECENT)
        pruned = retention.prune()
        assert outputs(old) == (NOTE_90, NOTE_90)
        assert outputs(old_without_log) == (NOTE_90, "")  # no note where nothing was kept
        assert outputs(recent) == ("hook says go\n", "applied 3 changes\n")
        assert pruned.outputs == 3 and not pruned.more
        assert NOTE_90.count("\n") == 0 and "90 days" in NOTE_90


def test_queued_running_and_pending_releases_are_never_touched(app, world):
    with app.app_context():
        live = [add_release(world, state=state, finished_at=None)
                for state in ("QUEUED", "READY", "PENDING_APPROVAL", "IN_PROGRESS")]
        # Even with a finish time (which only a bug could leave), a running release keeps its log.
        odd = add_release(world, state="IN_PROGRESS", finished_at=OLD)
        retention.prune(NOW + timedelta(days=365))
        for release_id in [*live, odd]:
            assert outputs(release_id) == ("hook says go\n", "applied 3 changes\n")


def test_the_release_its_decision_and_its_audit_trail_are_kept(app, world):
    with app.app_context():
        release_id = add_release(world, state="APPROVED", error=None)
        db.session.add(Decision(release_id=release_id, user_id=world["user"], decision="APPROVE",
                                comment="looks fine", via="email", created_at=OLD))
        for from_state, to_state in ((None, "QUEUED"), ("QUEUED", "READY"), ("READY", "PENDING_APPROVAL"),
                                     ("PENDING_APPROVAL", "APPROVED")):
            db.session.add(AuditEvent(release_id=release_id, environment_id=world["environment"], action="state",
                                      from_state=from_state, to_state=to_state, via="system", created_at=OLD))
        db.session.commit()
        retention.prune()
        db.session.expire_all()
        release = db.session.get(Release, release_id)
        assert release.state == "APPROVED" and release.hook_output == NOTE_90
        assert [(d.decision, d.comment, d.via) for d in release.decisions] == [("APPROVE", "looks fine", "email")]
        events = db.session.scalars(sa.select(AuditEvent.to_state).where(AuditEvent.release_id == release_id))
        assert list(events) == ["QUEUED", "READY", "PENDING_APPROVAL", "APPROVED"]


def test_pruning_goes_in_bounded_batches_and_carries_on_in_the_next_round(app, world):
    with app.app_context():
        # One finish time for all: the walk's cursor must tell them apart by id.
        ids = [add_release(world, exec_output="") for _ in range(23)]
        with recorded_statements() as statements:
            first = retention.prune(batch_size=5, max_batches=2)
        assert (first.outputs, first.more) == (10, True)
        updates = [params for statement, params in statements if statement.lstrip().upper().startswith("UPDATE")]
        assert len(updates) == 2 * 2  # hook and exec output per batch
        assert all(len(release_ids_in(params)) == 5 for params in updates)
        second = retention.prune(batch_size=5, max_batches=2)
        third = retention.prune(batch_size=5, max_batches=2)
        assert (second.outputs, second.more, third.outputs, third.more) == (10, True, 3, False)
        assert {outputs(release_id)[0] for release_id in ids} == {NOTE_90}


def test_pruning_again_changes_nothing_even_after_redis_lost_the_cursor(app, world):
    with app.app_context():
        release_id = add_release(world)
        assert retention.prune().outputs == 2
        assert retention.prune().outputs == 0  # the cursor is past it
        Redis.from_url(app.config["REDIS_URL"]).delete(retention.CURSOR_KEY)
        assert retention.prune().outputs == 0  # walked again from the start: the note stays as it was
        assert outputs(release_id) == (NOTE_90, NOTE_90)


def test_a_later_finish_is_pruned_once_its_time_comes(app, world):
    with app.app_context():
        first = add_release(world, finished_at=NOW - timedelta(days=91))
        later = add_release(world, finished_at=NOW - timedelta(days=89))
        retention.prune()
        assert outputs(first)[0] == NOTE_90 and outputs(later)[0] == "hook says go\n"
        retention.prune(NOW + timedelta(days=2))
        assert outputs(later)[0] == NOTE_90


def test_retention_of_zero_days_keeps_everything(app, world):
    app.config.update(OUTPUT_RETENTION_DAYS=0, NOTIFY_RETENTION_DAYS=0)
    with app.app_context():
        release_id = add_release(world, finished_at=NOW - timedelta(days=3000))
        mail_id = add_mail(world, status="sent", created_at=NOW - timedelta(days=3000))
        assert retention.prune() == retention.Pruned()
        assert outputs(release_id)[0] == "hook says go\n"
        assert db.session.get(OutgoingMail, mail_id) is not None


def test_the_note_names_the_configured_number_of_days(app, world):
    app.config.update(OUTPUT_RETENTION_DAYS=7)
    with app.app_context():
        release_id = add_release(world, finished_at=NOW - timedelta(days=8))
        retention.prune()
        assert outputs(release_id)[0] == "[Output removed 7 days after the release finished (OUTPUT_RETENTION_DAYS).]"


# -- mail, webhook deliveries and email links -----------------------------------------------------------


def add_delivery(world, *, status: str, created_at, last_attempt_at=None) -> int:
    import uuid

    delivery = WebhookDelivery(delivery_id=str(uuid.uuid4()), endpoint_id=world["endpoint"], event="release.failed",
                               body="{}", status=status, created_at=created_at, last_attempt_at=last_attempt_at)
    db.session.add(delivery)
    db.session.commit()
    return delivery.id


def add_link(world, release_id: int, *, expires_at, mail_id=None, used_at=None) -> int:
    import secrets

    link = EmailLink(token_hash=secrets.token_hex(32), user_id=world["user"], release_id=release_id,
                     mail_id=mail_id, action="approve", created_at=expires_at - timedelta(hours=72),
                     expires_at=expires_at, used_at=used_at)
    db.session.add(link)
    db.session.commit()
    return link.id


def remaining(model, ids: list[int]) -> list[int]:
    db.session.expire_all()
    return [row_id for row_id in ids if db.session.get(model, row_id) is not None]


def test_old_finished_mail_deliveries_and_spent_links_are_deleted_and_the_rest_kept(app, world):
    with app.app_context():
        release_id = add_release(world, finished_at=RECENT)
        old_sent = add_mail(world, status="sent", created_at=OLD, release_id=release_id)
        old_mails = [old_sent, *(add_mail(world, status=status, created_at=OLD)
                                 for status in ("outbox", "skipped", "failed"))]
        kept_mails = [add_mail(world, status="sent", created_at=RECENT),
                      *(add_mail(world, status=status, created_at=OLD)
                        for status in ("pending", "retrying", "sending"))]
        old_deliveries = [add_delivery(world, status=status, created_at=OLD) for status in ("succeeded", "failed")]
        kept_deliveries = [
            add_delivery(world, status="succeeded", created_at=RECENT),
            add_delivery(world, status="succeeded", created_at=OLD, last_attempt_at=RECENT),  # redelivered lately
            add_delivery(world, status="retrying", created_at=OLD)]
        old_links = [add_link(world, release_id, expires_at=OLD, mail_id=old_sent, used_at=OLD - timedelta(hours=1)),
                     add_link(world, release_id, expires_at=OLD)]
        kept_links = [add_link(world, release_id, expires_at=RECENT), add_link(world, release_id, expires_at=NOW)]

        pruned = retention.prune()
        assert (pruned.mails, pruned.deliveries, pruned.links) == (4, 2, 2)
        assert remaining(OutgoingMail, old_mails) == [] and remaining(OutgoingMail, kept_mails) == kept_mails
        assert remaining(WebhookDelivery, old_deliveries) == []
        assert remaining(WebhookDelivery, kept_deliveries) == kept_deliveries
        assert remaining(EmailLink, old_links) == [] and remaining(EmailLink, kept_links) == kept_links
        assert db.session.get(Release, release_id) is not None
        assert retention.prune() == retention.Pruned()


def test_a_link_outliving_its_mail_loses_only_the_reference(app, world):
    with app.app_context():
        release_id = add_release(world, finished_at=RECENT)
        mail_id = add_mail(world, status="sent", created_at=OLD, release_id=release_id)
        link_id = add_link(world, release_id, expires_at=RECENT, mail_id=mail_id)
        assert retention.prune().mails == 1
        db.session.expire_all()
        assert db.session.get(EmailLink, link_id).mail_id is None


def test_log_rows_are_deleted_in_bounded_batches(app, world):
    with app.app_context():
        for _ in range(12):
            add_mail(world, status="sent", created_at=OLD)
        first = retention.prune(batch_size=5, max_batches=2)
        assert (first.mails, first.more) == (10, True)
        second = retention.prune(batch_size=5, max_batches=2)
        assert (second.mails, second.more) == (2, False)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutgoingMail)) == 0
