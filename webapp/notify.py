"""Who hears about what, and email: composing, sending through SMTP (or, without
MAIL_SERVER, to the log and the development outbox), retrying with backoff.

Runs in the worker. `announce` turns one committed audit event into mail and webhook
delivery rows (once: unique per event and recipient); `send_mail` and
webhooks.deliver each claim a row, try once and record the outcome; `resume_due`
(the worker's periodic sweep) queues the rows whose next attempt is due.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr

import sqlalchemy as sa
from flask import current_app, render_template
from sqlalchemy.exc import IntegrityError

from . import email_links, webhooks
from .extensions import db
from .models import (
    AuditEvent,
    Decision,
    EmailLink,
    Environment,
    Grant,
    OutgoingMail,
    Release,
    User,
    WebhookDelivery,
    utcnow,
)
from .outbound import claim, retry_delay, worker_job
from .permissions import may_decide
from .resources import CHANGE_TYPES, DESTRUCTIVE_CHANGE_TYPES
from .transactions import commit_changes, write_transaction

log = logging.getLogger(__name__)

EVENT_OF_STATE = {"QUEUED": "release.queued", "PENDING_APPROVAL": "release.pending_approval",
                  "APPROVED": "release.approved", "REJECTED": "release.rejected",
                  "SUCCEEDED": "release.succeeded", "FAILED": "release.failed", "TIMED_OUT": "release.failed",
                  "CANCELLED": "release.cancelled"}
OUTCOME_STATES = ("APPROVED", "REJECTED", "SUCCEEDED", "FAILED", "TIMED_OUT")  # the triggerer is told
HOOK_TAIL_LINES = 15
STALE_SENDING = timedelta(minutes=5)  # a claim older than this belongs to a lost worker
SWEEP_BATCH = 200


def event_name(audit_event: AuditEvent) -> str | None:
    if audit_event.action == "state" and audit_event.release_id is not None:
        return EVENT_OF_STATE.get(audit_event.to_state or "")
    if audit_event.action == "settings" and (audit_event.details or {}).get("weakens_gate"):
        return "environment.updated"
    return None


# -- announcing: from one audit event to mail and delivery rows -----------------------------------

@worker_job
def announce(audit_event_id: int) -> dict[str, list[int]]:
    """Write the mails and webhook deliveries an audit event calls for, then queue them.

    At-least-once safe: a second run for the same event hits the unique constraints
    and writes nothing.
    """
    write_transaction()
    audit_event = db.session.get(AuditEvent, audit_event_id)
    name = event_name(audit_event) if audit_event is not None else None
    if name is None:
        db.session.rollback()
        return {"mails": [], "deliveries": []}
    try:
        mails = mails_for(audit_event)
        deliveries = webhooks.add_deliveries(name, audit_event)  # its queries flush the mails
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        log.info("audit event %s was announced already", audit_event_id)
        return {"mails": [], "deliveries": []}
    report = {"mails": [m.id for m in mails], "deliveries": [d.id for d in deliveries]}
    commit_changes()
    from worker.queues import enqueue_notify_job

    for mail_id in report["mails"]:
        enqueue_notify_job("mail", mail_id)
    for delivery_id in report["deliveries"]:
        enqueue_notify_job("webhook", delivery_id)
    return report


def approvers(release: Release) -> list[User]:
    """Active users who may decide `release`: admins and approve_release holders for its
    environment, not its triggerer unless the environment allows self-approval."""
    environment = release.environment
    granted = sa.select(Grant.id).where(
        Grant.user_id == User.id, Grant.permission == "approve_release",
        sa.or_(Grant.environment_id.is_(None), Grant.environment_id == environment.id)).exists()
    query = sa.select(User).where(User.active, sa.or_(User.is_admin, granted)).order_by(User.id)
    if not environment.allow_self_approval and release.triggered_by_id is not None:
        query = query.where(User.id != release.triggered_by_id)
    return list(db.session.scalars(query))


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


def mails_for(audit_event: AuditEvent) -> list[OutgoingMail]:
    """Within the caller's transaction: the mail rows an audit event calls for."""
    if audit_event.action == "settings":
        admins = db.session.scalars(sa.select(User).where(User.active, User.is_admin).order_by(User.id))
        made = [_mail("gate_weakened", admin, audit_event) for admin in admins if admin.id != audit_event.actor_id]
        return [m for m in made if m is not None]
    release = db.session.get(Release, audit_event.release_id)
    if audit_event.to_state == "PENDING_APPROVAL":
        if release.state != "PENDING_APPROVAL":  # decided before we got here: no links to send
            return []
        made = [_mail("approval_request", user, audit_event, release.id) for user in approvers(release)]
        return [m for m in made if m is not None]
    if audit_event.to_state in OUTCOME_STATES:
        owner = requester(release)
        if owner is None or not owner.active or owner.id == audit_event.actor_id:
            return []
        mail = _mail("release_outcome", owner, audit_event, release.id)
        return [mail] if mail is not None else []
    return []


# -- composing ------------------------------------------------------------------------------------

@dataclass
class Composed:
    subject: str
    text: str
    html: str
    links: list[dict] = field(default_factory=list)


def change_counts(resources: list[dict]) -> list[tuple[str, int, bool]]:
    """(change type, count, destructive), destructive types first."""
    counts = Counter(resource.get("changeType", "") for resource in resources)
    order = ([t for t in CHANGE_TYPES if t in DESTRUCTIVE_CHANGE_TYPES]
             + [t for t in CHANGE_TYPES if t not in DESTRUCTIVE_CHANGE_TYPES]
             + sorted(t for t in counts if t not in CHANGE_TYPES))
    return [(t, counts[t], t in DESTRUCTIVE_CHANGE_TYPES) for t in order if counts[t]]


def hook_tail(release: Release, lines: int = HOOK_TAIL_LINES) -> list[str]:
    return [line[:300] for line in (release.hook_output or "").rstrip("\n").splitlines()[-lines:]]


def _base() -> str:
    return current_app.config["BASE_URL"]


def link_url(token: str) -> str:
    return f"{_base()}/email/links/{token}"


def _render(name: str, **context) -> tuple[str, str]:
    return (render_template(f"email/{name}.txt", **context).strip() + "\n",
            render_template(f"email/{name}.html", **context))


def _where(environment: Environment) -> str:
    return f"{environment.project.name}/{environment.name}"


def compose(mail: OutgoingMail) -> Composed | str:
    """The message for `mail` now, or a sentence saying why it is no longer worth sending."""
    user = mail.user
    if user is None or not user.active:
        return "the recipient was deactivated or deleted"
    if mail.kind == "approval_request":
        return _approval_request(mail, user)
    if mail.kind == "release_outcome":
        return _release_outcome(mail)
    if mail.kind == "gate_weakened":
        return _gate_weakened(mail)
    return f"unknown kind of mail {mail.kind!r}"


def _approval_request(mail: OutgoingMail, user: User) -> Composed | str:
    release = mail.release
    if release is None or release.state != "PENDING_APPROVAL":
        return "the release is no longer waiting for approval"
    environment = release.environment
    if not may_decide(release, user):
        return "the recipient may no longer decide this release"
    now = utcnow()
    approve = email_links.issue(user.id, release.id, "approve", mail_id=mail.id, now=now)
    reject = email_links.issue(user.id, release.id, "reject", mail_id=mail.id, now=now)
    links = {"approve": link_url(approve), "reject": link_url(reject), "release": f"{_base()}/releases/{release.id}"}
    where = _where(environment)
    subject = f"[Releasegate] {where} ({environment.release_stream}): release #{release.id} needs your approval"
    context = {"release": release, "environment": environment, "where": where, "user": user, "links": links,
               "counts": change_counts(release.resources or []), "hook_tail": hook_tail(release),
               "triggered_by": release.triggered_by.username if release.triggered_by else "someone",
               "expires_at": now + timedelta(hours=current_app.config["EMAIL_LINK_HOURS"])}
    text, html = _render("approval_request", **context)
    return Composed(subject, text, html, [{"label": "Approve", "url": links["approve"]},
                                          {"label": "Reject", "url": links["reject"]},
                                          {"label": "Release page", "url": links["release"]}])


OUTCOME_WORDS = {"APPROVED": "was approved", "REJECTED": "was rejected", "SUCCEEDED": "succeeded",
                 "FAILED": "failed", "TIMED_OUT": "timed out"}


def _release_outcome(mail: OutgoingMail) -> Composed | str:
    release = mail.release
    if release is None:
        return "the release was deleted"
    audit_event = db.session.get(AuditEvent, mail.audit_event_id) if mail.audit_event_id else None
    outcome = audit_event.to_state if audit_event is not None else release.state
    decision = db.session.scalar(sa.select(Decision).where(Decision.release_id == release.id))
    by = audit_event.actor.username if audit_event is not None and audit_event.actor else None
    environment = release.environment
    where = _where(environment)
    words = OUTCOME_WORDS.get(outcome, outcome.replace("_", " ").lower())
    if outcome in ("APPROVED", "REJECTED") and by:
        words += f" by {by}"
    elif outcome == "REJECTED" and audit_event is not None and audit_event.reason.startswith("expired"):
        words = "expired without a decision"
    own = release.parent if release.kind == "BOT" and release.parent is not None else release
    subject = f"[Releasegate] {where}: release #{own.id} {words}"
    if release.kind == "BOT":
        subject = f"[Releasegate] {where}: release #{own.id} {words} (bot release #{release.id})"
    links = {"release": f"{_base()}/releases/{release.id}"}
    context = {"release": release, "own": own, "environment": environment, "where": where, "outcome": outcome,
               "words": words, "decision": decision, "by": by, "links": links, "user": mail.user,
               "reason": audit_event.reason if audit_event is not None else "", "error": release.error,
               "bot": release.bot_release}
    text, html = _render("release_outcome", **context)
    return Composed(subject, text, html, [{"label": "Release page", "url": links["release"]}])


def _gate_weakened(mail: OutgoingMail) -> Composed | str:
    audit_event = db.session.get(AuditEvent, mail.audit_event_id) if mail.audit_event_id else None
    environment = db.session.get(Environment, mail.environment_id) if mail.environment_id else None
    if audit_event is None or environment is None:
        return "the change or its environment was deleted"
    details = audit_event.details or {}
    where = _where(environment)
    by = audit_event.actor.username if audit_event.actor else audit_event.via
    links = {"environment": f"{_base()}/projects/{environment.project.name}/environments/{environment.name}"}
    if details.get("project"):  # a change of the project's repo, branch or hook ref (projects.py)
        links["project"] = f"{_base()}/admin/projects/{environment.project.name}"
    subject = f"[Releasegate] {where}: approval gate weakened by {by}"
    context = {"environment": environment, "where": where, "by": by, "changes": details.get("changes", {}),
               "weakens": details.get("weakens_gate", []), "links": links, "user": mail.user,
               "at": audit_event.created_at}
    text, html = _render("gate_weakened", **context)
    return Composed(subject, text, html, [{"label": "Project page" if "project" in links else "Environment page",
                                           "url": links.get("project", links["environment"])}])


def message(mail: OutgoingMail, composed: Composed) -> EmailMessage:
    sender = current_app.config["MAIL_SENDER"]
    built = EmailMessage()
    built["Subject"] = composed.subject
    built["From"] = sender
    built["To"] = formataddr((mail.user.username if mail.user else "", mail.to_address))
    built["Date"] = formatdate(usegmt=True)
    built["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or "localhost")
    built["Auto-Submitted"] = "auto-generated"  # no vacation replies
    built.set_content(composed.text)
    built.add_alternative(composed.html, subtype="html")
    return built


# -- sending ----------------------------------------------------------------------------------------

class PermanentFailure(Exception):
    """The server refused the message for good (e.g. the recipient does not exist)."""


def smtp_send(built: EmailMessage) -> None:
    """Send through MAIL_SERVER: implicit TLS (MAIL_USE_SSL) or STARTTLS (MAIL_USE_TLS), AUTH
    when MAIL_USERNAME is set."""
    config = current_app.config
    host, port, timeout = config["MAIL_SERVER"], config["MAIL_PORT"], config["MAIL_TIMEOUT_SECONDS"]
    context = ssl.create_default_context()
    if config["MAIL_USE_SSL"]:
        client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if config["MAIL_USE_TLS"] and not config["MAIL_USE_SSL"]:
            client.starttls(context=context)
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
    email_links.revoke(EmailLink.mail_id == mail_id, "the mail carrying it could not be sent")
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
    for model, kind in ((OutgoingMail, "mail"), (WebhookDelivery, "webhook")):
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

