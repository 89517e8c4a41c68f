"""The release page: what a release changes, who may decide it and why it waits, its live
log, and the actions on it (approve, reject, review, cancel, abort, trigger again).

Thin views: every change goes through the state machine in webapp/releases/ with a "ui"
actor; the release panel is a live fragment (one partial, included by the page and served
alone to HTMX polling). The inbox is inbox.py, the trigger form trigger_page.py.
"""
from __future__ import annotations

import zlib
from datetime import datetime

import sqlalchemy as sa
from flask import Blueprint, Response, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import approval_rules, changes, releases
from ..extensions import db
from ..intake.resources import (
    InvalidInput,
    change_counts,
    resource_groups,
)
from ..live import current_version
from ..models import TERMINAL_STATES, AuditEvent, Release, User, utcnow
from ..permissions import (
    PERMISSIONS,
    decide_refusal,
    excluded_authors,
    has_permission,
    may_cancel,
    may_decide,
    require_permission,
)
from .web import is_htmx, live_fragment, own_release, relative, release_environment, release_in_url, span, ui_actor

release_pages = Blueprint("release_pages", __name__)

RUNNING_STATES = ("READY", "IN_PROGRESS")
ABORTABLE_STATES = ("READY", "SCHEDULED", "IN_PROGRESS")
# The live part of the release page polls while the release can still move without
# anyone on the page acting: dispatch, the hook, the run, a change window opening, or a
# decision made elsewhere (and a finished emergency release until someone reviews it).
LIVE_STATES = ("QUEUED", "PENDING_APPROVAL", "SCHEDULED", *RUNNING_STATES)
MAX_COMMENT_LENGTH = 5000
MAX_NAMES = 5  # who may decide, by name, before "and 3 more"
OWN_EMERGENCY = ("You triggered this emergency release, so someone else with the \u201cRelease Approval/Reject\u201d "
                 "permission must review it.")



# -- who may do what (drawing buttons; the state machine checks again) ------------------------

def allowed_actions(release: Release, user: User, progress: approval_rules.Progress | None = None) -> dict[str, bool]:
    """Which buttons to draw for `user` (SPEC §5–§6). Approve only when the click would count for
    an unmet rule; Reject for anyone who could count for one (`progress`: of the release's rules)."""
    environment = release.environment
    own = may_cancel(release, user)
    state = release.state
    decider = state == "PENDING_APPROVAL" and may_decide(release, user)
    if decider and progress is None:
        progress = approval_rules.progress(release)
    approve = decider and bool(progress.counts_for(user))
    reject = decider and progress.may_reject(user)
    return {
        "decider": decider,
        "approve": approve,
        "reject": reject,
        "decide": approve or reject,
        "cancel": state == "QUEUED" and (own or has_permission(user, "cancel_release", environment)),
        "withdraw": state == "PENDING_APPROVAL" and own,
        "abort": state in ABORTABLE_STATES and has_permission(user, "cancel_release", environment),
        "review": (awaits_review(release) and state in TERMINAL_STATES and not own
                   and has_permission(user, "approve_release", environment)),
        "trigger_again": state in TERMINAL_STATES and has_permission(user, "trigger_release", environment),
    }


def awaits_review(release: Release) -> bool:
    """An emergency release nobody has reviewed yet (it can be reviewed once it has finished)."""
    return release.break_glass_reason is not None and release.reviewed_at is None


# -- the release page ---------------------------------------------------------------------------

def _mark(state: str, hook_output: str | int | None, exec_output: str | int | None, commit: str | None,
          hook_commit: str | None) -> str:
    def size(output: str | int | None) -> int:
        return output if isinstance(output, int) else len(output or "")

    return f"{state}.{size(hook_output)}.{size(exec_output)}.{(commit or '')[:12]}.{(hook_commit or '')[:12]}"


def _shown(release: Release) -> list[Release]:
    """The releases one page shows running: the release, and the bot release that applies it."""
    return [release] if release.bot_release is None else [release, release.bot_release]


def _output_mark(release_id: int) -> str:
    """What moves while a hook or command runs: heartbeats store output without an audit
    row, so the live version alone would not notice new log lines. One small query, over the
    release and its bot release (whose log the original's page shows)."""
    rows = db.session.execute(sa.select(
        Release.state, sa.func.length(Release.hook_output), sa.func.length(Release.exec_output),
        Release.commit, Release.hook_ref_commit)
        .where((Release.id == release_id) | (Release.parent_release_id == release_id)).order_by(Release.id)).all()
    if not rows:
        raise releases.NotFound(f"Release #{release_id} does not exist.")
    return "/".join(_mark(*row) for row in rows)


def _panel_key(release: Release) -> str:
    """What the panel (state, facts, buttons, decisions) shows that can change: when the live
    part sees it move, it brings a fresh panel along. An approval that leaves rules unmet moves
    no state, only the number of decisions; what changed appears once the worker computed it. A
    scheduled release learns a new reason to wait when the windows change; a review moves no state;
    an approved release shows the state of the bot release that applies it."""
    waiting = zlib.crc32(f"{release.scheduled_reason}.{release.scheduled_until}".encode())
    applying = release.bot_release.state if release.bot_release is not None else ""
    return (f"{release.state}.{(release.commit or '')[:12]}.{len(release.decisions)}.{int(release.since is not None)}"
            f".{int(release.reviewed_at is not None)}.{waiting:x}.{applying}")


def shows_approval(release: Release) -> bool:
    """A release that has waited for approval (the API's "approval" is set for the same ones)."""
    return release.kind == "RELEASE" and release.pending_since is not None


def hook_reason(release: Release) -> str | None:
    """Why the release waits, as its hook said: the verdict's reason, else its last output line."""
    if release.approval_reason:
        return release.approval_reason
    lines = [line.strip() for line in (release.hook_output or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def who_decides(progress: approval_rules.Progress) -> str:
    """"reviewer, dana can decide": everyone whose approval would still count, by name."""
    people = [user.username for user in progress.still_counting()]
    if not people:
        return "nobody left can approve it"
    more = len(people) - MAX_NAMES
    return ", ".join(people[:MAX_NAMES]) + (f" and {more} more" if more > 0 else "") + " can decide"


def why_cannot_decide(release: Release, user: User, progress: approval_rules.Progress) -> str | None:
    """Said in place of Approve/Reject to someone who may not decide a pending release, naming who can."""
    refusal = decide_refusal(release, user)
    if refusal is None:
        return None
    environment = release.environment
    who = who_decides(progress)
    if not has_permission(user, "approve_release", environment):
        return (f"Deciding needs {PERMISSIONS['approve_release']} on {environment.project.name}/{environment.name}"
                f" \u2014 {who}.")
    if release.triggered_by_id == user.id:
        return (f"You triggered this release, so someone else decides \u2014 {who}. "
                "Withdraw it if it should not go ahead.")
    return f"{refusal.rstrip('.')} \u2014 {who}."


def decision_header(release: Release, progress: approval_rules.Progress, now: datetime) -> dict:
    """What a reviewer decides on, first: why it waits, for how long, who decides, what it changes."""
    expires = releases.expires_at(release.pending_since, release.environment.approval_timeout_hours)
    return {"reason": hook_reason(release),
            "waiting": span((now - release.pending_since).total_seconds()),
            "expires_in": relative(expires, now, precise=True) if expires is not None else None,
            "deciders": who_decides(progress)}


def _panel_context(release: Release) -> dict:
    user = current_user._get_current_object()
    now = utcnow()
    progress = approval_rules.progress(release) if shows_approval(release) else None
    actions = allowed_actions(release, user, progress)
    approved = release if release.kind == "BOT" else release.bot_release
    pending = release.state == "PENDING_APPROVAL" and progress is not None
    return {**_waiting_context(release, user, now), "release": release, "environment": release.environment,
            "counts": change_counts(release.resources or []), "actions": actions,
            "progress": progress,
            "applied": release.bot_release is not None and release.bot_release.state in TERMINAL_STATES,
            "took": span((release.finished_at - release.started_at).total_seconds())
            if release.started_at is not None and release.finished_at is not None else None,
            "header": decision_header(release, progress, now) if pending else None,
            "why_cannot": why_cannot_decide(release, user, progress) if pending else None,
            "approve_label": progress.approve_label(user) if actions["approve"] else None,
            "why_not": progress.why_not(user) if actions["decider"] and not actions["approve"] else None,
            "approved_digest": approved.approval_digest if approved is not None else None,
            "since": changes.view(release),
            "expires_at": releases.expires_at(release.pending_since, release.environment.approval_timeout_hours)
            if release.state == "PENDING_APPROVAL" else None,
            "excluded_authors": excluded_authors(release) if release.state == "PENDING_APPROVAL" else []}


def _waiting_context(release: Release, user: User, now: datetime) -> dict:
    """Whether an emergency release's review is overdue; why its triggerer may not review it."""
    unreviewed, finished = awaits_review(release), release.state in TERMINAL_STATES
    due = release.review_due_at if unreviewed else None
    return {"review_overdue": due is not None and due <= now, "finished": finished,
            "why_not_review": OWN_EMERGENCY if unreviewed and finished and may_cancel(release, user) else None}


def _live_context(release: Release, version: str) -> dict:
    """`version` is read before the release was loaded, so a change in between shows next poll.
    An approved release's page follows its bot release, which applies it, until that is done."""
    shown = _shown(release)
    live_url = None
    if any(each.state in LIVE_STATES for each in shown) or awaits_review(release):
        args = {"v": version, "s": _panel_key(release)}
        if any(each.state in RUNNING_STATES for each in shown):
            args["o"] = "/".join(_mark(each.state, each.hook_output, each.exec_output, each.commit,
                                       each.hook_ref_commit) for each in shown)
        live_url = url_for("release_pages.release_live", release_id=release.id, **args)
    events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.release_id == release.id)
                                .order_by(AuditEvent.id)).all()
    now = utcnow()
    running = shown[-1]
    return {"release": release, "events": events, "live_url": live_url,
            "following": running.state in RUNNING_STATES, "applied": running.state in TERMINAL_STATES,
            # re-drawn as the logs grow, so a running release says how long it has run
            "elapsed": span((now - running.started_at).total_seconds())
            if running.state in RUNNING_STATES and running.started_at is not None else None}


@release_pages.get("/releases/<int:release_id>")
@login_required
def release(release_id: int):
    version = current_version()
    found = release_in_url(release_id)
    return render_template("release.html", groups=resource_groups(found.resources or []),
                           panel=_panel_context(found), live=_live_context(found, version))


@release_pages.get("/fragments/releases/<int:release_id>/live")
@login_required
def release_live(release_id: int):
    """Logs and audit trail. When the state moved, the panel comes along out of band so its
    buttons match the new state."""
    shown_mark = request.args.get("o")

    def output_moved() -> bool:  # a running release's `?o=`: its logs grow without moving the version
        return shown_mark is not None and shown_mark != _output_mark(release_id)

    def render(version: str) -> str:
        found = release_in_url(release_id)
        html = render_template("_release_live.html", live=_live_context(found, version))
        if request.args.get("s") != _panel_key(found):
            html += render_template("_release_panel.html", panel=_panel_context(found), panel_oob=True)
        return html

    return live_fragment(render, moved=output_moved)


def _after_action(release: Release, message: str) -> Response | str:
    """HTMX: the re-rendered panel (with the message out of band); a plain form: back to the page."""
    if is_htmx():
        version = current_version()
        db.session.refresh(release)
        return (render_template("_release_panel.html", panel=_panel_context(release), message=message)
                + render_template("_release_live.html", live=_live_context(release, version), live_oob=True))
    flash(message, "success")
    return redirect(url_for("release_pages.release", release_id=release.id), 303)


def _comment() -> str:
    comment = request.form.get("comment", "").strip()
    if len(comment) > MAX_COMMENT_LENGTH:
        raise InvalidInput(f"The comment is {len(comment):,} characters long; the limit is "
                           f"{MAX_COMMENT_LENGTH:,}.", 422)
    return comment


@release_pages.post("/releases/<int:release_id>/approve")
@login_required  # outermost: an ended session is sent to sign in (HX-Redirect for htmx)
@require_permission("approve_release", environment=release_environment)
def approve(release_id: int):
    result = releases.approve(release_id, ui_actor(), _comment())
    release = releases.get_release(release_id)
    if result.id != release_id:
        return _after_action(release, f"Approved. Bot release #{result.id} is applying the changes.")
    counted = next(d.rules for d in reversed(release.decisions)
                   if d.user_id == current_user.id and d.decision == "APPROVE")
    return _after_action(release, f"Your approval counted for {', '.join(counted)}; the release waits for the rest: "
                                  f"{approval_rules.progress(release).summary()}.")


@release_pages.post("/releases/<int:release_id>/reject")
@login_required
@require_permission("approve_release", environment=release_environment)
def reject(release_id: int):
    rejected = releases.reject(release_id, ui_actor(), _comment())
    return _after_action(rejected, f"Release #{release_id} was rejected.")


@release_pages.post("/releases/<int:release_id>/review")
@login_required
@require_permission("approve_release", environment=release_environment)
def review(release_id: int):
    """Mark a finished emergency release reviewed (the state machine says who may, and when)."""
    reviewed = releases.review(release_id, ui_actor(), request.form.get("comment", ""))
    return _after_action(reviewed, f"Emergency release #{release_id} is marked reviewed.")


@release_pages.post("/releases/<int:release_id>/cancel")
@login_required
@require_permission("cancel_release", environment=release_environment, or_if=own_release)
def cancel(release_id: int):
    """Cancel a queued release, or withdraw one's own pending release (the state machine tells which)."""
    withdrawing = release_in_url(release_id).state == "PENDING_APPROVAL"
    cancelled = releases.cancel(release_id, ui_actor())
    return _after_action(cancelled, f"Release #{release_id} was {'withdrawn' if withdrawing else 'cancelled'}.")


@release_pages.post("/releases/<int:release_id>/abort")
@login_required
@require_permission("cancel_release", environment=release_environment)
def abort_release(release_id: int):
    started = release_in_url(release_id).state != "SCHEDULED"
    aborted = releases.abort(release_id, ui_actor())
    return _after_action(aborted, f"Release #{release_id} was aborted; its processes are being stopped." if started
                         else f"Scheduled release #{release_id} was aborted before it started.")


def _to_release_page(release_id: int) -> Response:
    target = url_for("release_pages.release", release_id=release_id)
    if is_htmx():
        response = make_response("", 200)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, 303)


@release_pages.post("/releases/<int:release_id>/trigger-again")
@login_required
@require_permission("trigger_release", environment=release_environment)
def trigger_again(release_id: int):
    original = release_in_url(release_id)
    new, _created = releases.trigger(original.environment, ui_actor(), list(original.resources or []))
    flash(f"Release #{new.id} was triggered with the same changes as release #{release_id}.", "success")
    return _to_release_page(new.id)
