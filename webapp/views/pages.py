"""The dashboard: every environment's queue, live; and what it shares with the environment
page (environment_pages.py): the live releases of a queue, the change-window note, the clock."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, render_template, request
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block
from sqlalchemy.orm import aliased

from .. import approval_rules, windows
from ..extensions import db
from ..intake.resources import DESTRUCTIVE_CHANGE_TYPES
from ..live import current_version
from ..models import (
    SLOT_STATES,
    Decision,
    Environment,
    Project,
    Release,
    User,
    utcnow,
)
from .web import live_fragment

pages = Blueprint("pages", __name__)

LIVE_STATES = ("QUEUED", *SLOT_STATES)
# What an environment card calls its last finished release: the last one that ran to an end
# (rejected, cancelled and approved releases changed nothing; an approved one's bot release ran).
FINISHED_STATES = ("SUCCEEDED", "FAILED", "TIMED_OUT")


# -- lookups ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LiveRelease:
    """A release line: the columns it shows, and for a pending release how far its approval
    rules are met ("1 of 2 rules met — dba: waiting (needs 1 of 3 members), sre: approved by bob").

    A BOT release keeps the identity of the release it applies (`parent_id`): its triggerer
    (`parent_triggered_by_name`) and who approved it (`approved_by`)."""

    id: int
    kind: str
    state: str
    environment_id: int
    created_at: datetime
    started_at: datetime | None
    triggered_by_name: str | None
    scheduled_reason: str | None = None
    break_glass_reason: str | None = None  # an emergency release: live, or finished and not reviewed yet
    review_due_at: datetime | None = None
    approval: str | None = None
    description: str = ""
    commit: str | None = None
    finished_at: datetime | None = None
    destructive: bool = False  # it deletes, replaces or recreates a resource
    parent_id: int | None = None
    parent_triggered_by_name: str | None = None
    approved_by: tuple[str, ...] = ()
    may_review: bool = False  # the viewer's approval would count for one of its unmet rules
    scheduled_until: datetime | None = None  # a scheduled release: when it may start, if known

    @property
    def number(self) -> int:
        """The number people know it by: a bot release's is its original's."""
        return self.parent_id if self.parent_id is not None else self.id

    @property
    def by(self) -> str | None:
        """Who triggered it: for a bot release, who triggered the original."""
        return self.parent_triggered_by_name if self.parent_id is not None else self.triggered_by_name


def empty_lists() -> dict[str, list[LiveRelease]]:
    return {"active": [], "queue": [], "emergencies": [], "finished": []}


def _last_finished_ids(environment_id: int | None) -> sa.Select:
    """SQL: the id of each environment's last finished release, each found by walking that
    environment's history backwards on ix_releases_environment_history (environment_id, id) to
    the first release in a finished state: a few index entries, never the whole history."""
    earlier = aliased(Release)
    last = (sa.select(earlier.id).where(earlier.environment_id == Environment.id,
                                        earlier.state.in_(FINISHED_STATES))
            .order_by(earlier.id.desc()).limit(1).correlate(Environment).scalar_subquery())
    query = sa.select(last).select_from(Environment)
    return query.where(Environment.id == environment_id) if environment_id is not None else query


def live_releases(environment_id: int | None = None, viewer: User | None = None
                   ) -> dict[int, dict[str, list[LiveRelease]]]:
    """Active and queued releases by environment, the emergency releases among them or finished
    without their review yet, and each environment's last finished release, in one query. The live
    ones are looked up by state, the unreviewed emergencies by their partial index
    (ix_releases_review_pending), the last finished through the history index.

    Plain rows of the columns a release line shows, not ORM objects: a line needs no
    relationship, and a board shows the live releases of every environment. The progress of the
    pending ones' rules, and who triggered and approved the releases bot releases apply, take a
    few more queries, however many they are. `viewer`: whose approval `may_review` asks about.
    """
    def rows_where(*conditions) -> sa.Select:
        query = (sa.select(Release.id, Release.kind, Release.state, Release.environment_id, Release.created_at,
                           Release.started_at, User.username.label("triggered_by_name"), Release.triggered_by_id,
                           Release.approval_rules, Release.approval_reason, Release.since, Release.scheduled_reason,
                           Release.scheduled_until, Release.break_glass_reason, Release.review_due_at,
                           Release.description, Release.commit,
                           Release.finished_at, Release.resources, Release.parent_release_id, Release.reviewed_at)
                 .outerjoin(User, User.id == Release.triggered_by_id).where(*conditions))
        return query.where(Release.environment_id == environment_id) if environment_id is not None else query

    unreviewed = rows_where(Release.break_glass_reason.is_not(None), Release.reviewed_at.is_(None),
                            Release.state.not_in(LIVE_STATES))
    finished = rows_where(Release.id.in_(_last_finished_ids(environment_id)),
                          sa.or_(Release.break_glass_reason.is_(None), Release.reviewed_at.is_not(None)))
    # Sorted here, not by the database: with ORDER BY id, SQLite (no statistics) would walk the
    # environment's whole history in id order rather than look the few live releases up by state.
    rows = sorted(db.session.execute(sa.union_all(rows_where(Release.state.in_(LIVE_STATES)), unreviewed,
                                                  finished)), key=lambda row: row.id)
    progress = approval_rules.progress_of(row for row in rows if row.state == "PENDING_APPROVAL")
    parents = {row.parent_release_id for row in rows if row.parent_release_id is not None}
    approvers, parent_triggerers = _approvers(parents), _triggerers(parents)
    # Rows come in id order, so each environment keeps its newest finished one (the last finished
    # release, or an older emergency release still to be reviewed).
    last_ids = {row.environment_id: row.id for row in rows if row.state in FINISHED_STATES}
    live: dict[int, dict[str, list[LiveRelease]]] = {}
    for row in rows:
        pending = progress.get(row.id)
        release = LiveRelease(
            row.id, row.kind, row.state, row.environment_id, row.created_at, row.started_at,
            row.triggered_by_name, row.scheduled_reason, row.break_glass_reason, row.review_due_at,
            pending.summary() if pending is not None else None, row.description or "", row.commit,
            row.finished_at, any(r.get("changeType") in DESTRUCTIVE_CHANGE_TYPES for r in row.resources or []),
            row.parent_release_id, parent_triggerers.get(row.parent_release_id),
            tuple(approvers.get(row.parent_release_id, ())),
            pending is not None and bool(pending.counts_for(viewer)), row.scheduled_until)
        lists = live.setdefault(release.environment_id, empty_lists())
        if release.break_glass_reason is not None and row.reviewed_at is None:
            lists["emergencies"].append(release)
        if release.state == "QUEUED":
            lists["queue"].append(release)
        elif release.state in LIVE_STATES:
            lists["active"].append(release)
        if last_ids.get(release.environment_id) == release.id:
            lists["finished"].append(release)
    return live


def _triggerers(release_ids: set[int]) -> dict[int, str | None]:
    """Who triggered each of `release_ids` (the originals of bot releases)."""
    if not release_ids:
        return {}
    query = (sa.select(Release.id, User.username).outerjoin(User, User.id == Release.triggered_by_id)
             .where(Release.id.in_(release_ids)))
    return dict(db.session.execute(query).all())


def _approvers(release_ids: set[int]) -> dict[int, list[str]]:
    """Who approved each of `release_ids` (the originals of bot releases), in the order they did."""
    if not release_ids:
        return {}
    found: dict[int, list[str]] = {}
    for release_id, name in db.session.execute(
            sa.select(Decision.release_id, User.username).outerjoin(User, User.id == Decision.user_id)
            .where(Decision.release_id.in_(release_ids), Decision.decision == "APPROVE").order_by(Decision.id)):
        found.setdefault(release_id, []).append(name or "a deleted user")
    return found


# -- change windows and emergency releases, as the dashboard and the environment page show them --

def window_note(verdict: windows.Verdict) -> str | None:
    """The badge of an environment where releases may not start now (windows.judge's reason):
    "Frozen until 2026-12-24T00:00:00Z — year-end freeze", "Outside change window, opens Tue 09:00
    Europe/Berlin"; None while they may."""
    if verdict.open:
        return None
    if verdict.reason.startswith("frozen"):
        return verdict.reason[:1].upper() + verdict.reason[1:]
    _waiting, _colon, opening = verdict.reason.partition(": ")  # "waiting for the change window: opens …"
    return f"Outside change window, {opening}" if opening else "Outside change window; none will open"


def has_windows(environment: Environment) -> bool:
    """Whether the environment's badge can change with the clock alone."""
    project = environment.project
    return bool(environment.change_windows or environment.freezes or project.freezes
                or (environment.change_windows is None and project.change_windows))


def emergency(release: LiveRelease, now: datetime, **where: Any) -> dict[str, Any]:
    """An emergency release for a banner: whether it still runs, or its review is due or overdue."""
    due = release.review_due_at
    return {"release": release, "finished": release.state not in LIVE_STATES, "overdue": due is not None and due <= now,
            **where}


def clock(timed: bool) -> dict[str, str]:
    """A live fragment whose windows badges change with the clock carries the minute it was drawn
    (`?m=`) and is drawn again when the minute has moved, even if nothing else did."""
    return {"m": utcnow().strftime("%Y%m%d%H%M")} if timed else {}


def clock_moved() -> bool:
    drawn = request.args.get("m")
    return drawn is not None and drawn != utcnow().strftime("%Y%m%d%H%M")


# -- dashboard ----------------------------------------------------------------------------------

def _dashboard_context(version: str) -> dict[str, Any]:
    """Every project with its environments, each with its active releases, queue, last finished
    release and window badge; the emergency releases that still run or wait for their review, and
    the overdue reviews."""
    rows = db.session.execute(sa.select(Project, Environment)
                              .outerjoin(Environment, Environment.project_id == Project.id)
                              .order_by(Project.name, Environment.name)).all()
    live = live_releases(viewer=current_user._get_current_object())
    now = utcnow()
    board: list[dict[str, Any]] = []
    emergencies: list[dict[str, Any]] = []
    timed = False
    for project, environment in rows:
        if not board or board[-1]["project"] is not project:
            board.append({"project": project, "environments": []})
        if environment is None:
            continue
        lists = live.get(environment.id, empty_lists())
        # The project is loaded by the same query, so judging every environment adds no query.
        finished = lists["finished"][0] if lists["finished"] else None
        board[-1]["environments"].append({"environment": environment, "active": lists["active"],
                                          "queue": lists["queue"], "finished": finished,
                                          "window": window_note(windows.judge_environment(environment, now))})
        emergencies += [emergency(release, now, project=project.name, environment=environment.name)
                        for release in lists["emergencies"]]
        timed = timed or has_windows(environment)
    emergencies.sort(key=lambda entry: entry["release"].id)
    return {"board": board, "emergencies": emergencies,
            "overdue": [entry for entry in emergencies if entry["overdue"]],
            "version": version, "clock": clock(timed)}


@pages.get("/")
@login_required
def dashboard():
    version = current_version()  # read before the rows, so a change in between shows on the next poll
    return render_template("dashboard.html", **_dashboard_context(version))


@pages.get("/fragments/dashboard")
@login_required
def dashboard_fragment():
    return live_fragment(lambda version: render_block("dashboard.html", "dashboard", **_dashboard_context(version)),
                         moved=clock_moved)
