"""Who hears about what, and email: who is mailed, sending through SMTP (or, without
MAIL_SERVER, to the log and the development outbox), retrying with backoff; compose.py
writes the messages.

Runs in the worker. `announce` turns one committed audit event into mail and webhook
delivery rows (once: unique per event and recipient); `send_mail` and
webhooks.deliver each claim a row, try once and record the outcome; `resume_due`
(the worker's periodic sweep) queues the rows whose next attempt is due.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import datetime, timedelta
from email.message import EmailMessage

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from .. import approval_rules
from ..extensions import db
from ..models import (
    AuditEvent,
    EmailLink,
    OutgoingMail,
    Release,
    SlackMessage,
    User,
    WebhookDelivery,
    utcnow,
)
from ..permissions import deciders_by_environment
from ..transactions import commit_changes, revoke_email_links, write_transaction
from . import slack, webhooks
from .compose import compose, message
from .outbound import claim, retry_delay, worker_job

log = logging.getLogger(__name__)

EVENT_OF_STATE = {"QUEUED": "release.queued", "PENDING_APPROVAL": "release.pending_approval",
                  "APPROVED": "release.approved", "REJECTED": "release.rejected",
                  "SUCCEEDED": "release.succeeded", "FAILED": "release.failed", "TIMED_OUT": "release.failed",
                  "CANCELLED": "release.cancelled"}
EVENT_OF_ACTION = {"reminder": "release.reminder", "break_glass": "release.break_glass",
                   "review_overdue": "release.review_overdue"}  # audit actions about a release
EMERGENCY_ACTIONS = ("break_glass", "review_overdue")  # their mail kinds bear the same names
OUTCOME_STATES = ("APPROVED", "REJECTED", "SUCCEEDED", "FAILED", "TIMED_OUT")  # the triggerer is told
STALE_SENDING = timedelta(minutes=5)  # a claim older than this belongs to a lost worker
SWEEP_BATCH = 200


def event_name(audit_event: AuditEvent) -> str | None:
    if audit_event.action == "state" and audit_event.release_id is not None:
        return EVENT_OF_STATE.get(audit_event.to_state or "")
    if audit_event.action == "settings" and (audit_event.details or {}).get("weakens_gate"):
        return "environment.updated"
    if audit_event.action in EVENT_OF_ACTION and audit_event.release_id is not None:
        return EVENT_OF_ACTION[audit_event.action]
    return None


# -- announcing: from one audit event to mail and delivery rows -----------------------------------

@worker_job
def announce(audit_event_id: int) -> dict[str, list[int]]:
    """Write the mails, webhook deliveries and Slack messages (new, or to update) an audit event
    calls for, then queue them.

    At-least-once safe: a second run for the same event hits the unique constraints
    and writes nothing.
    """
    write_transaction()
    audit_event = db.session.get(AuditEvent, audit_event_id)
    name = event_name(audit_event) if audit_event is not None else None
    if name is None and (audit_event is None or audit_event.action != "approval"):  # approvals: mail only
        db.session.rollback()
        return {"mails": [], "deliveries": [], "slack": []}
    try:
        mails = mails_for(audit_event)
        deliveries = webhooks.add_deliveries(name, audit_event) if name else []  # its queries flush the mails
        slack_messages = slack.messages_for(audit_event)
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        log.info("audit event %s was announced already", audit_event_id)
        return {"mails": [], "deliveries": [], "slack": []}
    report = {"mails": [m.id for m in mails], "deliveries": [d.id for d in deliveries],
              "slack": [m.id for m in slack_messages]}
    commit_changes()
    from worker.queues import enqueue_notify_job

    for mail_id in report["mails"]:
        enqueue_notify_job("mail", mail_id)
    for delivery_id in report["deliveries"]:
        enqueue_notify_job("webhook", delivery_id)
    for message_id in report["slack"]:
        enqueue_notify_job("slack", message_id)
    return report


def requester(release: Release) -> User | None:
    """Who asked for the release: its triggerer, or for a BOT release the original's."""
    if release.kind == "BOT" and release.parent is not None:
        return release.parent.triggered_by
    return release.triggered_by


def _mail(kind: str, user: User, audit_event: AuditEvent, release_id: int | None = None) -> OutgoingMail | None:
    if not user.email:
        log.info("%s has no email address; no %s mail for audit event %s", user.username, kind, audit_event.id)
        return None
    mail = OutgoingMail(kind=kind, user_id=user.id, to_address=user.email, release_id=release_id,
                        environment_id=audit_event.environment_id, audit_event_id=audit_event.id,
                        status="pending", next_attempt_at=utcnow())
    db.session.add(mail)
    return mail


def may_approve_in(environment_id: int) -> list[User]:
    """The active admins and approve_release holders of an environment, each once."""
    found = deciders_by_environment([environment_id]).get(environment_id)
    return found[2] if found is not None else []


def mails_for(audit_event: AuditEvent) -> list[OutgoingMail]:
    """Within the caller's transaction: the mail rows an audit event calls for."""
    if audit_event.action == "settings":
        admins = db.session.scalars(sa.select(User).where(User.active, User.is_admin).order_by(User.id))
        made = [_mail("gate_weakened", admin, audit_event) for admin in admins if admin.id != audit_event.actor_id]
        return [m for m in made if m is not None]
    release = db.session.get(Release, audit_event.release_id)
    if audit_event.action in EMERGENCY_ACTIONS:
        # Loud on purpose: everyone who may approve there, admins included, and the triggerer
        # too when they are one of them (the mail tells them someone else must review it).
        made = [_mail(audit_event.action, user, audit_event, release.id)
                for user in may_approve_in(release.environment_id)]
        return [m for m in made if m is not None]
    if audit_event.to_state == "PENDING_APPROVAL" or audit_event.action in ("approval", "reminder"):
        if release.state != "PENDING_APPROVAL":  # decided before we got here: no links to send
            return []
        # Only the people whose approval would still count; after an approval, everyone but its giver.
        asked = [user for user in approval_rules.progress(release).still_counting() if user.id != audit_event.actor_id]
        made = [_mail("approval_request", user, audit_event, release.id) for user in asked]
        return [m for m in made if m is not None]
    if audit_event.to_state in OUTCOME_STATES:
        owner = requester(release)
        if owner is None or not owner.active or owner.id == audit_event.actor_id:
            return []
        mail = _mail("release_outcome", owner, audit_event, release.id)
        return [mail] if mail is not None else []
    return []


# -- sending ----------------------------------------------------------------------------------------

class PermanentFailure(Exception):
    """The server refused the message for good (e.g. the recipient does not exist)."""


def smtp_send(built: EmailMessage) -> None:
    """Send through MAIL_SERVER: implicit TLS (MAIL_USE_SSL) or STARTTLS (MAIL_USE_TLS), AUTH
    when MAIL_USERNAME is set."""
    config = current_app.config
    host, port, timeout = config["MAIL_SERVER"], config["MAIL_PORT"], config["MAIL_TIMEOUT_SECONDS"]
    if config["MAIL_USE_SSL"]:
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if config["MAIL_USE_TLS"] and not config["MAIL_USE_SSL"]:
            client.starttls(context=ssl.create_default_context())
        if config["MAIL_USERNAME"]:
            client.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
        try:
            client.send_message(built)
        except smtplib.SMTPRecipientsRefused as error:
            raise PermanentFailure(f"the server refused the recipient: {error.recipients}") from error


@worker_job
def send_mail(mail_id: int) -> str | None:
    """One attempt at one mail (the job). Returns the new status; None when it was not due."""
    if not claim(OutgoingMail, mail_id, utcnow()):
        return None
    write_transaction()
    mail = db.session.get(OutgoingMail, mail_id)
    try:
        composed = compose(mail)
    except Exception as error:  # a bug or a missing row: recorded and retried, never silent
        log.exception("could not compose mail %s", mail_id)
        db.session.rollback()
        return _failed(mail_id, f"could not compose the message: {error}")
    now = utcnow()
    if isinstance(composed, str):
        mail.status, mail.last_error, mail.sent_at = "skipped", f"Not sent: {composed}.", now
        commit_changes()
        return "skipped"
    mail.subject = composed.subject[:300]
    if not current_app.config["MAIL_SERVER"]:
        # Development: the log and the outbox page. The bodies hold live links, which is
        # why nothing is stored when a real server sends the mail.
        mail.body_text, mail.body_html, mail.links = composed.text, composed.html, composed.links
        mail.status, mail.sent_at, mail.last_error = "outbox", now, None
        to_address = mail.to_address
        commit_changes()
        log.info("mail (no MAIL_SERVER, kept in the outbox) to %s: %s\n%s", to_address, composed.subject,
                 composed.text)
        return "outbox"
    built = message(mail, composed)
    commit_changes()  # the links exist before the mail that carries them can be read
    try:
        smtp_send(built)
    except PermanentFailure as error:
        return _failed(mail_id, str(error), give_up=True)
    except (smtplib.SMTPException, OSError) as error:
        return _failed(mail_id, f"{type(error).__name__}: {error}")
    write_transaction()
    db.session.execute(sa.update(OutgoingMail).where(OutgoingMail.id == mail_id, OutgoingMail.status == "sending")
                       .values(status="sent", sent_at=utcnow(), last_error=None)
                       .execution_options(synchronize_session=False))
    commit_changes()
    return "sent"


def _failed(mail_id: int, error: str, *, give_up: bool = False) -> str:
    write_transaction()
    mail = db.session.get(OutgoingMail, mail_id)
    # The links of a mail that was not delivered must not work if it turns up after all.
    revoke_email_links(EmailLink.mail_id == mail_id, "the mail carrying it could not be sent")
    delay = None if give_up else retry_delay(mail.attempts)
    status = "retrying" if delay is not None else "failed"
    now = utcnow()
    db.session.execute(sa.update(OutgoingMail).where(OutgoingMail.id == mail_id, OutgoingMail.status == "sending")
                       .values(status=status, last_error=error[:2000],
                               next_attempt_at=now + timedelta(seconds=delay) if delay is not None else None)
                       .execution_options(synchronize_session=False))
    to_address, attempt = mail.to_address, mail.attempts
    commit_changes()
    log.warning("mail %s to %s failed (attempt %s): %s; %s", mail_id, to_address, attempt, error,
                f"next try in {delay} s" if delay is not None else "giving up")
    return status


# -- the sweep: due retries and lost jobs ---------------------------------------------------------

def resume_due(now: datetime | None = None) -> dict[str, list[int]]:
    """Queue mails and deliveries whose next attempt is due (the worker runs this often).

    A row claimed by a worker that died is handed back after STALE_SENDING.
    """
    from worker.queues import enqueue_notify_job

    now = now or utcnow()
    report: dict[str, list[int]] = {}
    for model, kind in ((OutgoingMail, "mail"), (WebhookDelivery, "webhook"), (SlackMessage, "slack")):
        stale = (model.status == "sending", model.claimed_at < now - STALE_SENDING)
        if db.session.scalar(sa.select(model.id).where(*stale).limit(1)) is not None:
            write_transaction()
            db.session.execute(sa.update(model).where(*stale).values(status="retrying", next_attempt_at=now)
                               .execution_options(synchronize_session=False))
            commit_changes()
        due = list(db.session.scalars(
            sa.select(model.id).where(model.status.in_(("pending", "retrying")), model.next_attempt_at <= now)
            .order_by(model.id).limit(SWEEP_BATCH)))
        db.session.rollback()
        report[kind] = [row_id for row_id in due if enqueue_notify_job(kind, row_id, only_if_missing=True)]
    return report


# -- what admins read ------------------------------------------------------------------------------

def recent_mails(limit: int = 200, *, outbox_only: bool = False) -> list[OutgoingMail]:
    query = sa.select(OutgoingMail).order_by(OutgoingMail.id.desc()).limit(limit)
    if outbox_only:
        query = query.where(OutgoingMail.status == "outbox")
    return list(db.session.scalars(query))

