"""The pending-approvals inbox: every release the signed-in person may decide, with what each
asks of them, and the live count in the navigation bar."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template, url_for
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block

from .. import approval_rules, releases
from ..extensions import db
from ..intake.resources import change_counts
from ..live import current_version
from ..models import Release, User
from ..permissions import (
    decidable_releases,
)
from .web import live_fragment

inbox = Blueprint("inbox", __name__)


# -- the pending-approvals inbox ----------------------------------------------------------------

def _waiting_since():
    return sa.func.coalesce(Release.pending_since, Release.created_at)


def awaiting(user: User, pending: list) -> list[tuple]:
    """(release, its progress) for each of `pending` (releases `user` may decide, or rows of their
    id, environment_id, triggered_by_id, approval_rules, approval_reason and since) whose rules
    `user`'s approval would still count for: what the inbox lists and the navigation counts."""
    progress = approval_rules.progress_of(pending)
    return [(release, progress[release.id]) for release in pending if progress[release.id].counts_for(user)]


def _inbox_context(version: str) -> dict:
    """`version` is read before the query, so a change in between shows on the next poll.

    Each release the user's approval would count for, with its changes, destructive or not, how
    long it has waited and when it expires; how many other releases wait for someone else, and
    the user's own releases waiting for review."""
    user = current_user._get_current_object()
    query = decidable_releases(user).order_by(_waiting_since(), Release.id)
    waiting = awaiting(user, db.session.scalars(query).all())
    pending = db.session.scalar(sa.select(sa.func.count(Release.id)).where(Release.state == "PENDING_APPROVAL"))
    own = db.session.scalars(sa.select(Release).where(Release.state == "PENDING_APPROVAL",
                                                      Release.triggered_by_id == user.id)
                             .order_by(_waiting_since(), Release.id)).all()
    return {"waiting": [_inbox_entry(release, progress, progress.counts_for(user))
                        for release, progress in waiting],
            "others": pending - len(waiting), "own": [_inbox_entry(release) for release in own],
            "refresh_url": url_for("inbox.approvals_list", v=version)}


def _inbox_entry(release: Release, progress: approval_rules.Progress | None = None,
                 counted: list[str] | None = None) -> dict:
    """A release as an inbox line: its change counts, whether it destroys anything, how long it
    has waited since and when it expires (None: never)."""
    counts = change_counts(release.resources or [])
    since = release.pending_since or release.created_at
    expires = releases.expires_at(release.pending_since, release.environment.approval_timeout_hours)
    return {"release": release, "counts": counts, "progress": progress, "counted": counted or [],
            "destructive": any(destructive for _type, _count, destructive in counts),
            "since": since, "expires": expires}


@inbox.get("/approvals")
@login_required
def approvals():
    return render_template("approvals.html", **_inbox_context(current_version()))


@inbox.get("/fragments/approvals")
@login_required
def approvals_list():
    return live_fragment(lambda version: render_block("approvals.html", "approvals_list", **_inbox_context(version)))


@inbox.get("/fragments/approvals-count")
@login_required
def approvals_count():
    """The nav badge: the releases the inbox lists, counted in a few queries however many wait
    (at most one is pending per environment); empty when nothing waits."""
    def render(version: str) -> str:
        user = current_user._get_current_object()
        query = decidable_releases(user).with_only_columns(
            Release.id, Release.environment_id, Release.triggered_by_id, Release.approval_rules,
            Release.approval_reason, Release.since)
        count = len(awaiting(user, db.session.execute(query).all()))
        return render_template("_approvals_count.html", count=count, counted_at=version)

    return live_fragment(render)
