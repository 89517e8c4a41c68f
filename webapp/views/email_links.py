"""Pages behind the Approve and Reject links in mail.

GET shows a confirmation page to the signed-in addressee and never changes anything
(mail scanners fetch, and some click, every link); the decision is the POST of that
page, CSRF-protected and gated like any approve. The page offers both decisions: either
link of a mail may approve or reject, and the decision burns both.
"""
from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request
from flask_login import login_required

from .. import approval_rules
from ..intake.resources import change_counts, resource_groups
from ..models import EmailLink, Environment
from ..notify import email_links
from ..notify.compose import hook_tail
from ..permissions import require_permission
from .web import signed_in_user

email_pages = Blueprint("email_links", __name__, url_prefix="/email")
MAX_COMMENT_LENGTH = 5000
HOOK_LINES_SHOWN = 40


@email_pages.after_request
def _link_headers(response: Response) -> Response:
    # The token is in the address: keep it out of caches, other sites' logs and search engines.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response



def _link_environment(token: str, **_) -> Environment:
    link = email_links.find(token)
    if link is None:
        abort(404, email_links.UNKNOWN.message)
    return link.release.environment


def _link_action(token: str) -> str:
    link = email_links.find(token)
    return link.action if link is not None else ""


def _refused(refusal: email_links.Refusal, link: EmailLink | None):
    shown = link if refusal.kind not in ("unknown", "foreign") else None  # say nothing about others' links
    return render_template("email/refused.html", refusal=refusal, link=shown), refusal.status


def _confirmation(link: EmailLink, *, comment: str = "", error: str | None = None, status: int = 200):
    release = link.release
    progress = approval_rules.progress(release)
    return render_template("email/confirm.html", link=link, release=release, environment=release.environment,
                           actions=email_links.allowed_actions(link, signed_in_user()),
                           counts=change_counts(release.resources or []),
                           groups=resource_groups(release.resources or []), progress=progress,
                           approve_label=progress.approve_label(signed_in_user()),
                           hook_lines=hook_tail(release, HOOK_LINES_SHOWN), comment=comment, error=error), status


@email_pages.get("/links/<token>")
@login_required
def confirm(token: str):
    link = email_links.find(token)
    refusal = email_links.pair_refusal(link, signed_in_user())
    if refusal is not None:
        return _refused(refusal, link)
    return _confirmation(link)


@email_pages.post("/links/<token>")
@login_required
@require_permission("approve_release", environment=_link_environment)
def decide(token: str):
    # A page rendered before both buttons existed posts no `action`: it meant its link's own.
    action = request.form.get("action") if "action" in request.form else _link_action(token)
    if action not in email_links.ACTIONS:
        abort(400, "The form did not say whether to approve or reject, so nothing was changed. Reload the page "
                   "and press Approve or Reject.")
    comment = request.form.get("comment", "").strip()
    if len(comment) > MAX_COMMENT_LENGTH:
        link = email_links.find(token)
        refusal = email_links.pair_refusal(link, signed_in_user(), action)
        if refusal is not None:
            return _refused(refusal, link)
        return _confirmation(link, comment=comment, status=422,
                             error=f"The comment is longer than {MAX_COMMENT_LENGTH} characters; shorten it.")
    outcome = email_links.decide(token, signed_in_user(), action, comment)
    if isinstance(outcome, email_links.Refusal):
        return _refused(outcome, email_links.find(token))
    release = outcome.release
    waiting = release.state == "PENDING_APPROVAL"  # approved, but other rules remain
    me = signed_in_user()
    counted = next((d.rules for d in reversed(release.decisions) if d.user_id == me.id and d.decision == "APPROVE"),
                   []) if waiting else []
    return render_template("email/decided.html", outcome=outcome, release=release, counted=counted,
                           progress=approval_rules.progress(release) if waiting else None)
