"""The mails themselves: an approval request with its one-use decision links, a release's
outcome for its triggerer, a weakened gate for the admins, an emergency release and its overdue
review for everyone who may approve there; text and HTML from templates/email."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr

import sqlalchemy as sa
from flask import current_app, render_template

from .. import approval_rules, changes
from ..extensions import db
from ..intake.resources import change_counts, resource_groups
from ..intake.storable import one_line
from ..models import AuditEvent, Decision, Environment, OutgoingMail, Release, User, utcnow
from ..permissions import PERMISSIONS, may_decide
from . import email_links

HOOK_TAIL_LINES = 15
MAIL_RESOURCES = 25  # the resources an approval request names; the release page has them all
NAME_CHARS = 200


@dataclass
class Composed:
    subject: str
    text: str
    html: str
    links: list[dict] = field(default_factory=list)


def short_line(text: object) -> str:
    """`text` on one line (a resource name cannot forge a fake "Approve:" line in a text mail),
    cut to NAME_CHARS."""
    cleaned = one_line(text)
    return cleaned if len(cleaned) <= NAME_CHARS else cleaned[:NAME_CHARS - 1] + "\u2026"


def named_resources(resources: list[dict], limit: int = MAIL_RESOURCES) -> tuple[list[dict], int]:
    """The first `limit` resources in the release page's order (destructive change types first),
    each on one line, and how many more there are."""
    ordered = [{"change_type": short_line(group["change_type"]), "destructive": group["destructive"],
                "type": short_line(resource.get("resourceType")), "name": short_line(resource.get("resourceName"))}
               for group in resource_groups(resources) for resource in group["resources"]]
    return ordered[:limit], max(len(ordered) - limit, 0)


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
    if mail.kind in ("break_glass", "review_overdue"):
        return _emergency(mail)
    return f"unknown kind of mail {mail.kind!r}"


MAIL_COMMITS = 5  # the first commits an approval request lists; the release page has them all


def _approval_request(mail: OutgoingMail, user: User) -> Composed | str:
    release = mail.release
    if release is None or release.state != "PENDING_APPROVAL":
        return "the release is no longer waiting for approval"
    environment = release.environment
    if not may_decide(release, user):
        return "the recipient may no longer decide this release"
    progress = approval_rules.progress(release)
    counted = progress.counts_for(user)
    if not counted:
        return "the recipient's approval would no longer count for any rule of this release"
    news = _approval_news(mail)
    now = utcnow()
    approve = email_links.issue(user.id, release.id, "approve", mail_id=mail.id, now=now)
    reject = email_links.issue(user.id, release.id, "reject", mail_id=mail.id, now=now)
    links = {"approve": link_url(approve), "reject": link_url(reject), "release": f"{_base()}/releases/{release.id}"}
    where = _where(environment)
    subject = f"[Releasegate] {where} ({environment.release_stream}): release #{release.id} needs your approval"
    if news and news.get("reminder"):
        subject = (f"[Releasegate] Reminder: {where} ({environment.release_stream}): release #{release.id} "
                   "still needs your approval")
    elif news:
        subject = (f"[Releasegate] {where} ({environment.release_stream}): release #{release.id} still needs "
                   f"your approval ({news['by']} approved as {', '.join(news['rules'])})")
    named, more = named_resources(release.resources or [])
    context = {"release": release, "environment": environment, "where": where, "user": user, "links": links,
               "counts": change_counts(release.resources or []), "hook_tail": hook_tail(release),
               "resources": named, "more_resources": more,
               # commits recorded before git.log made them one line each, made so here
               "since_summary": one_line(changes.summary(release)),
               "first_commits": [{**commit, "subject": one_line(commit.get("subject")),
                                  "author_name": one_line(commit.get("author_name"))}
                                 for commit in ((release.since or {}).get("commits") or [])[:MAIL_COMMITS]],
               "triggered_by": release.triggered_by.username if release.triggered_by else "someone",
               "expires_at": now + timedelta(hours=current_app.config["EMAIL_LINK_HOURS"]),
               "progress": progress, "news": news, "approve_label": progress.approve_label(user),
               "counted": counted if progress.approve_label(user) != "Approve" else []}
    text, html = _render("approval_request", **context)
    return Composed(subject, text, html, [{"label": progress.approve_label(user), "url": links["approve"]},
                                          {"label": "Reject", "url": links["reject"]},
                                          {"label": "Release page", "url": links["release"]}])


def _approval_news(mail: OutgoingMail) -> dict | None:
    """For a mail sent because someone approved while rules remain (an "approval" audit event):
    who approved and for which rules; None for the first request."""
    audit_event = db.session.get(AuditEvent, mail.audit_event_id) if mail.audit_event_id else None
    if audit_event is None or audit_event.action not in ("approval", "reminder"):
        return None
    if audit_event.action == "reminder":
        return {"reminder": audit_event.reason}
    return {"by": audit_event.actor.username if audit_event.actor else "someone",
            "rules": (audit_event.details or {}).get("rules") or ["a rule"]}


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
    if details.get("project"):  # a change of the project's repo, branch or hook ref (environments.update_project)
        links["project"] = f"{_base()}/admin/projects/{environment.project.name}"
    subject = f"[Releasegate] {where}: approval gate weakened by {by}"
    context = {"environment": environment, "where": where, "by": by, "changes": details.get("changes", {}),
               "weakens": details.get("weakens_gate", []), "links": links, "user": mail.user,
               "at": audit_event.created_at}
    text, html = _render("gate_weakened", **context)
    return Composed(subject, text, html, [{"label": "Project page" if "project" in links else "Environment page",
                                           "url": links.get("project", links["environment"])}])


def _emergency(mail: OutgoingMail) -> Composed | str:
    """An emergency release was triggered ("break_glass"), or its review is overdue
    ("review_overdue"): what it skipped, why, and who must review it by when. No decision links:
    there is nothing to approve, only a release page to review it on."""
    release = mail.release
    if release is None:
        return "the release was deleted"
    if mail.kind == "review_overdue" and release.reviewed_at is not None:
        return "the emergency release was reviewed meanwhile"
    environment = release.environment
    where = _where(environment)
    triggered_by = release.triggered_by.username if release.triggered_by else "someone"
    links = {"release": f"{_base()}/releases/{release.id}"}
    if mail.kind == "break_glass":
        subject = (f"[Releasegate] EMERGENCY: {where} ({environment.release_stream}): emergency release "
                   f"#{release.id} triggered by {triggered_by}")
    else:
        subject = (f"[Releasegate] Review overdue: {where} ({environment.release_stream}): emergency release "
                   f"#{release.id} was to be reviewed by {release.review_due_at:%Y-%m-%d %H:%M} UTC")
    context = {"release": release, "environment": environment, "where": where, "user": mail.user,
               "triggered_by": triggered_by, "own": release.triggered_by_id == mail.user_id, "links": links,
               "reviewer_permission": PERMISSIONS["approve_release"], "counts": change_counts(release.resources or [])}
    text, html = _render(mail.kind, **context)
    return Composed(subject, text, html, [{"label": "Release page", "url": links["release"]}])


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
