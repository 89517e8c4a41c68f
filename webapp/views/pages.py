"""Dashboard and environment pages: every environment's queue, live; one environment's
queue, history, settings, variables and settings audit trail."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block
from sqlalchemy.orm import aliased, joinedload
from werkzeug.datastructures import MultiDict

from .. import approval_rules, environments, windows
from ..environments import MODES, SettingsConflict, sandbox_path_entries
from ..extensions import db
from ..intake.ids import parse_id
from ..intake.resources import DESTRUCTIVE_CHANGE_TYPES, InvalidInput
from ..intake.validate import ENVIRONMENT_FIELDS, VARIABLE_FIELDS, variable_name
from ..live import current_version
from ..models import (
    SLOT_STATES,
    STATES,
    AuditEvent,
    Decision,
    Environment,
    Group,
    Project,
    Release,
    User,
    Variable,
    utcnow,
)
from ..permissions import has_permission, require_permission
from ..transactions import Actor
from .web import is_htmx, live_fragment

pages = Blueprint("pages", __name__)

HISTORY_PAGE_SIZE = 25
SETTINGS_EVENTS_SHOWN = 10
LIVE_STATES = ("QUEUED", *SLOT_STATES)
# What an environment card calls its last finished release: the last one that ran to an end
# (rejected, cancelled and approved releases changed nothing; an approved one's bot release ran).
FINISHED_STATES = ("SUCCEEDED", "FAILED", "TIMED_OUT")
SETTING_LABELS = {
    "release_stream": "Release stream",
    "approval_workflow": "Approval workflow",
    "parallel_releases": "Parallel releases",
    "hook_ref": "Hook ref",
    "release_command": "Release command",
    "hook_timeout_seconds": "Hook timeout (seconds)",
    "release_timeout_seconds": "Release timeout (seconds)",
    "allow_self_approval": "Allow self-approval",
    "wait_for_external_finish": "Wait for an external finish",
    "approval_timeout_hours": "Approval timeout (hours)",
    "reminder_hours": "Reminder every (hours)",
    "sandbox_paths": "Host paths for the release command",
    "approval_rules": "Approval rules",
    "authors_may_not_approve": "Authors may not approve",
    "change_windows": "Change windows",
    "freezes": "Freezes",
    "allow_break_glass": "Allow emergency releases",
    "break_glass_review_hours": "Emergency release review due within (hours)",
}
MODE_SWITCHES = tuple(MODES["approval"])  # shown as one choice of mode
SWITCHES = ("allow_self_approval", "wait_for_external_finish", "authors_may_not_approve", "allow_break_glass")
ANYONE = "*"  # the approval rules textarea: a rule for anyone who may approve
WHOLE_NUMBERS = ("hook_timeout_seconds", "release_timeout_seconds")
OPTIONAL_TEXT = ("hook_ref", "release_command")
KEPT_WHEN_ABSENT = ("approval_rules", "change_windows", "freezes", "break_glass_review_hours")


# -- lookups ------------------------------------------------------------------------------------

def _environment(project: str, environment: str, **_) -> Environment:
    """The environment named in the URL (shared by the permission check and the view)."""
    if "page_environment" not in g:
        found = db.session.scalar(sa.select(Environment).join(Project).options(joinedload(Environment.project))
                                  .where(Project.name == project, Environment.name == environment))
        if found is None:
            abort(404, f"There is no environment {project}/{environment}.")
        g.page_environment = found
    return g.page_environment


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


def _empty_lists() -> dict[str, list[LiveRelease]]:
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


def _live_releases(environment_id: int | None = None, viewer: User | None = None
                   ) -> dict[int, dict[str, list[LiveRelease]]]:
    """Active and queued releases by environment, the emergency releases among them or finished
    without their review yet, and each environment's last finished release, in one query. The live
    ones are looked up by state, the unreviewed emergencies by their partial index
    (ix_releases_review_pending), the last finished through the history index.

    Plain rows of the columns a release line shows, not ORM objects: a line needs no
    relationship, and a board shows the live releases of every environment. The progress of the
    pending ones' rules, and who approved the releases bot releases apply, take a few more
    queries, however many they are. `viewer`: whose approval `may_review` asks about.
    """
    parent, parent_user = aliased(Release), aliased(User)

    def rows_where(*conditions) -> sa.Select:
        query = (sa.select(Release.id, Release.kind, Release.state, Release.environment_id, Release.created_at,
                           Release.started_at, User.username.label("triggered_by_name"), Release.triggered_by_id,
                           Release.approval_rules, Release.approval_reason, Release.since, Release.scheduled_reason,
                           Release.scheduled_until, Release.break_glass_reason, Release.review_due_at,
                           Release.description, Release.commit,
                           Release.finished_at, Release.resources, Release.parent_release_id, Release.reviewed_at,
                           parent_user.username.label("parent_triggered_by_name"))
                 .outerjoin(User, User.id == Release.triggered_by_id)
                 .outerjoin(parent, parent.id == Release.parent_release_id)
                 .outerjoin(parent_user, parent_user.id == parent.triggered_by_id).where(*conditions))
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
    approvers = _approvers({row.parent_release_id for row in rows if row.parent_release_id is not None})
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
            row.parent_release_id, row.parent_triggered_by_name, tuple(approvers.get(row.parent_release_id, ())),
            pending is not None and bool(pending.counts_for(viewer)), row.scheduled_until)
        lists = live.setdefault(release.environment_id, _empty_lists())
        if release.break_glass_reason is not None and row.reviewed_at is None:
            lists["emergencies"].append(release)
        if release.state == "QUEUED":
            lists["queue"].append(release)
        elif release.state in LIVE_STATES:
            lists["active"].append(release)
        if last_ids.get(release.environment_id) == release.id:
            lists["finished"].append(release)
    return live


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


def _has_windows(environment: Environment) -> bool:
    """Whether the environment's badge can change with the clock alone."""
    project = environment.project
    return bool(environment.change_windows or environment.freezes or project.freezes
                or (environment.change_windows is None and project.change_windows))


def _emergency(release: LiveRelease, now: datetime, **where: Any) -> dict[str, Any]:
    """An emergency release for a banner: whether it still runs, or its review is due or overdue."""
    due = release.review_due_at
    return {"release": release, "finished": release.state not in LIVE_STATES, "overdue": due is not None and due <= now,
            **where}


def _clock(timed: bool) -> dict[str, str]:
    """A live fragment whose windows badges change with the clock carries the minute it was drawn
    (`?m=`) and is drawn again when the minute has moved, even if nothing else did."""
    return {"m": utcnow().strftime("%Y%m%d%H%M")} if timed else {}


def _clock_moved() -> bool:
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
    live = _live_releases(viewer=current_user._get_current_object())
    now = utcnow()
    board: list[dict[str, Any]] = []
    emergencies: list[dict[str, Any]] = []
    timed = False
    for project, environment in rows:
        if not board or board[-1]["project"] is not project:
            board.append({"project": project, "environments": []})
        if environment is None:
            continue
        lists = live.get(environment.id, _empty_lists())
        # The project is loaded by the same query, so judging every environment adds no query.
        finished = lists["finished"][0] if lists["finished"] else None
        board[-1]["environments"].append({"environment": environment, "active": lists["active"],
                                          "queue": lists["queue"], "finished": finished,
                                          "window": window_note(windows.judge_environment(environment, now))})
        emergencies += [_emergency(release, now, project=project.name, environment=environment.name)
                        for release in lists["emergencies"]]
        timed = timed or _has_windows(environment)
    emergencies.sort(key=lambda entry: entry["release"].id)
    return {"board": board, "emergencies": emergencies,
            "overdue": [entry for entry in emergencies if entry["overdue"]],
            "version": version, "clock": _clock(timed)}


@pages.get("/")
@login_required
def dashboard():
    version = current_version()  # read before the rows, so a change in between shows on the next poll
    return render_template("dashboard.html", **_dashboard_context(version))


@pages.get("/fragments/dashboard")
@login_required
def dashboard_fragment():
    return live_fragment(lambda version: render_block("dashboard.html", "dashboard", **_dashboard_context(version)),
                         moved=_clock_moved)


# -- environment page ---------------------------------------------------------------------------

def _history(environment: Environment) -> dict[str, Any]:
    """One page of the environment's releases, newest first, optionally of one state."""
    state = request.args.get("state", "")
    if state and state not in STATES:
        raise InvalidInput(f"There is no state {state[:40]!r}; choose one of {', '.join(STATES)}.", 400)
    asked = request.args.get("before")
    before = parse_id(asked) if asked else None
    if asked and before is None:
        raise InvalidInput("before must be a release number.", 400)
    query = sa.select(Release).options(joinedload(Release.triggered_by)).where(
        Release.environment_id == environment.id)
    if state:
        query = query.where(Release.state == state)
    if before is not None:
        query = query.where(Release.id < before)
    rows = list(db.session.scalars(query.order_by(Release.id.desc()).limit(HISTORY_PAGE_SIZE + 1)))
    older = rows[HISTORY_PAGE_SIZE - 1].id if len(rows) > HISTORY_PAGE_SIZE else None
    return {"releases": rows[:HISTORY_PAGE_SIZE], "state": state, "before": before, "older": older,
            "states": STATES}


def _settings_events(environment: Environment) -> list[AuditEvent]:
    return list(db.session.scalars(
        sa.select(AuditEvent).options(joinedload(AuditEvent.actor))
        .where(AuditEvent.environment_id == environment.id, AuditEvent.release_id.is_(None))
        .order_by(AuditEvent.id.desc()).limit(SETTINGS_EVENTS_SHOWN)))


def _settings_values(environment: Environment) -> dict[str, Any]:
    """The settings as the form shows them."""
    values: dict[str, Any] = {"mode": environment.mode}
    for name in SETTING_LABELS:
        value = getattr(environment, name)
        if name in MODE_SWITCHES:
            continue  # shown as the mode
        if name in SWITCHES:
            values[name] = bool(value)
        elif name == "sandbox_paths":
            values[name] = "\n".join(f"{entry['path']} {'rw' if entry['writable'] else 'ro'}" for entry in value)
        elif name == "approval_rules":
            values[name] = "\n".join(f"{rule['name']} {rule['group'] or ANYONE} {rule['approvals']}"
                                     for rule in value)
        elif name == "change_windows":
            values[name] = windows.window_lines(value)
        elif name == "freezes":
            values[name] = windows.freeze_lines(value)
        elif value is None:
            values[name] = ""
        elif isinstance(value, float):
            values[name] = f"{value:.15g}"  # 24.0 reads "24"; typed decimals come back exactly
        else:
            values[name] = str(value)
    return values


def _variable_values(environment: Environment) -> dict[str, Any]:
    """The variable form: empty, or filled in for `?edit=NAME` (never with a secret value)."""
    name = request.args.get("edit", "")
    variable = next((v for v in environment.variables if v.name == name), None)
    if variable is None:
        return {"name": "", "value": "", "secret": False, "for_hooks": False, "existing_secret": False}
    return {"name": variable.name, "value": "" if variable.secret else variable.value, "secret": variable.secret,
            "for_hooks": variable.for_hooks, "existing_secret": variable.secret}


def _environment_live_context(environment: Environment, version: str) -> dict[str, Any]:
    """What the live part of the environment page shows: its releases, window badge and emergencies.
    `version` is read before the rows, so a change in between shows on the next poll."""
    live = _live_releases(environment.id).get(environment.id, _empty_lists())
    now = utcnow()
    return {"environment": environment, "project": environment.project, "version": version,
            "active": live["active"], "queue": live["queue"],
            "emergencies": [_emergency(release, now) for release in live["emergencies"]],
            "window": window_note(windows.judge_environment(environment, now)),
            "clock": _clock(_has_windows(environment))}


def _render_environment(environment: Environment, *, status: int = 200, settings: dict | None = None,
                        settings_errors: dict | None = None, variable: dict | None = None,
                        variable_errors: dict | None = None, weakening: list[str] | None = None,
                        resubmit: list[tuple[str, str]] | None = None):
    manager = has_permission(current_user, "manage_environments", environment)
    page = render_template(
        "environment.html", **_environment_live_context(environment, current_version()),
        history=_history(environment),
        events=_settings_events(environment), can_manage=manager, labels=SETTING_LABELS,
        group_names=list(db.session.scalars(sa.select(Group.name).order_by(Group.name))) if manager else [],
        settings=settings or _settings_values(environment), settings_errors=settings_errors or {},
        weakening=weakening or [], resubmit=resubmit or [],
        variable=variable or (_variable_values(environment) if manager else {}),
        variable_errors=variable_errors or {})
    return make_response(page, status)


@pages.get("/projects/<project>/environments/<environment>")
@login_required
def environment(project: str, environment: str):
    return _render_environment(_environment(project, environment))


@pages.get("/fragments/projects/<project>/environments/<environment>")
@login_required
def environment_fragment(project: str, environment: str):
    def render(version: str) -> str:
        # A partial, not a block of environment.html: jinja2-fragments' render_block takes the
        # context as keywords beside its own parameter named `environment`.
        return render_template("_environment_live.html",
                               **_environment_live_context(_environment(project, environment), version))

    return live_fragment(render, moved=_clock_moved)


# -- settings -----------------------------------------------------------------------------------

def _typed_setting(name: str, raw: str, form: MultiDict) -> Any:
    """A form string as the type ENVIRONMENT_FIELDS checks: switches, numbers, None."""
    label = SETTING_LABELS[name]
    if name in SWITCHES:
        return name in form
    raw = raw.replace("\r\n", "\n").strip()
    if name == "sandbox_paths":
        return _sandbox_lines(raw, label)
    if name == "approval_rules":
        return _rule_lines(raw, label)
    try:
        if name == "change_windows":
            return windows.windows_from_lines(raw, label, nullable=True)
        if name == "freezes":
            return windows.freezes_from_lines(raw, label)
    except windows.WindowError as error:
        raise InvalidInput(str(error)) from None
    if name in WHOLE_NUMBERS:
        if not raw:
            raise InvalidInput(f"{label} is required.")
        try:
            return int(raw)
        except ValueError:
            raise InvalidInput(f"{label} must be a whole number.") from None
    if name in ("approval_timeout_hours", "reminder_hours", "break_glass_review_hours"):
        if not raw:
            return None
        try:
            hours = float(raw)
        except ValueError:
            hours = math.nan
        if not math.isfinite(hours):
            raise InvalidInput(f"{label} must be a number of hours, or empty for none.")
        return hours
    if name in OPTIONAL_TEXT and not raw:
        return None
    return raw


def _sandbox_lines(raw: str, label: str) -> list[dict[str, Any]]:
    """The host paths textarea: one `PATH rw` or `PATH ro` a line (`PATH` alone is read-only)."""
    entries = []
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        path, mode = line.rsplit(None, 1) if len(line.split()) > 1 else (line, "ro")
        if mode not in ("rw", "ro"):
            raise InvalidInput(f"{label}, line {number}: end the line with rw (writable) or ro (read-only), "
                               "e.g. /srv/shop rw.")
        entries.append({"path": path.rstrip(), "writable": mode == "rw"})
    return entries


def _rule_lines(raw: str, label: str) -> list[dict[str, Any]]:
    """The approval rules textarea: one `NAME GROUP APPROVALS` a line, GROUP `*` for anyone who
    may approve (e.g. `dba dba 1`); empty: the default rule."""
    rules = []
    for number, line in enumerate(raw.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if len(words) != 3 or not words[2].isascii() or not words[2].isdecimal():
            raise InvalidInput(f"{label}, line {number}: write a rule as its name, a group (or {ANYONE} for anyone "
                               "who may approve) and a number of approvals, e.g. dba dba 1.")
        name, group, approvals = words
        rules.append({"name": name, "group": None if group == ANYONE else group, "approvals": int(approvals)})
    return rules


def _settings_from_form(form: MultiDict, environment: Environment) -> tuple[dict[str, Any], dict[str, str]]:
    """Clean values for every setting, and a sentence for each field that is not acceptable."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    mode = MODES.get(form.get("mode", ""))
    if mode is None:
        errors["mode"] = environments.MODE_CHOICE
    for name, check in ENVIRONMENT_FIELDS.items():
        label = SETTING_LABELS[name]
        if name in MODE_SWITCHES:
            if mode is not None:
                values[name] = check(mode[name], label)
            continue
        if name in KEPT_WHEN_ABSENT and name not in form:
            continue  # a form without the box (an older page) leaves the setting alone, never resets it
        try:
            value = _typed_setting(name, form.get(name, ""), form)
            if name == "sandbox_paths" and sandbox_path_entries(value, label) == environment.sandbox_paths:
                # Sent back unchanged with the rest of the form: a change to another setting is not
                # refused for host paths the operator has since disallowed (each run judges them again).
                values[name] = environment.sandbox_paths
                continue
            values[name] = check(value, label)
        except InvalidInput as error:
            errors[name] = error.message
    return values, errors


def _submitted_settings(form: MultiDict) -> dict[str, Any]:
    """What the person typed, to show again beside the errors."""
    typed = {name: (name in form) if name in SWITCHES else form.get(name, "")
             for name in SETTING_LABELS if name not in MODE_SWITCHES}
    return {"mode": form.get("mode", ""), **typed}


def _weakening_sentences(environment: Environment, changes: dict[str, Any], weakened: list[str]) -> list[str]:
    """What saving `changes` would make easier, one sentence for each weakened setting."""
    said = {
        "approval_workflow": "The approval workflow is turned off: no hook decides and nobody approves.",
        "release_stream": "The release stream the hook compares changes.",
        "allow_self_approval": "People may approve releases they triggered themselves.",
        "release_command": "The release command changes: it runs as code on the workers.",
        "hook_ref": "The hook is read from another ref.",
        "sandbox_paths": "The release command sees more host paths, or may write to more.",
        "authors_may_not_approve": "People who wrote or committed a change may approve it.",
        "allow_break_glass": "Emergency releases may skip the hook, the approvals and the windows.",
        "break_glass_review_hours": "Emergency releases get longer before their review is overdue.",
        "change_windows": "Releases may start at more times (the change windows are wider).",
        "freezes": "A freeze is lifted or shortened.",
    }
    sentences = []
    for name in weakened:
        if name == "approval_rules":
            lowered = approval_rules.weakenings(environment.approval_rules or [], changes[name])
            sentences.append(f"Fewer approvals are needed: {'; '.join(lowered)}.")
        else:
            sentences.append(said.get(name, f"{SETTING_LABELS.get(name, name)} changes."))
    return sentences


def _form_fields(form: MultiDict) -> list[tuple[str, str]]:
    """The submitted fields, to send again unchanged from the "Save anyway" button."""
    return [(name, value) for name, value in form.items(multi=True)
            if name not in ("csrf_token", "confirm_weakening")]


def _back_to(environment: Environment, anchor: str):
    return redirect(url_for("pages.environment", project=environment.project.name, environment=environment.name,
                            _anchor=anchor), 303)


@pages.get("/projects/<project>/environments/<environment>/settings")
@pages.get("/projects/<project>/environments/<environment>/variables")
@login_required
def form_address(project: str, environment: str):
    """The address a settings or variable form posts to, opened again (a reload after a refused
    save, a copied link): the environment page holds the form, showing what is saved."""
    found = _environment(project, environment)
    form = request.path.rpartition("/")[2]
    flash(f"Nothing was saved from that address: the {form} form below shows what is saved now.", "info")
    return _back_to(found, form)


@pages.post("/projects/<project>/environments/<environment>/settings")
@login_required
@require_permission("manage_environments", environment=_environment)
def save_settings(project: str, environment: str):
    found = _environment(project, environment)
    values, errors = _settings_from_form(request.form, found)
    if errors:
        return _render_environment(found, status=422, settings=_submitted_settings(request.form),
                                   settings_errors=errors)
    # Only what the person changed, so a conflict is reported on the switch they touched.
    changes = {name: value for name, value in values.items() if getattr(found, name) != value}
    try:
        environments.check_settings_changes(found, changes)
        weakened = environments.weakened_settings(
            {name: {"old": getattr(found, name), "new": value} for name, value in changes.items()})
        if weakened and request.form.get("confirm_weakening") != "1":
            # Nothing is saved until the person has read what the change makes easier.
            return _render_environment(found, status=409, settings=_submitted_settings(request.form),
                                       weakening=_weakening_sentences(found, changes, weakened),
                                       resubmit=_form_fields(request.form))
        changed = environments.update_environment(found, Actor(current_user._get_current_object(), "ui"), changes)
    except SettingsConflict as conflict:
        db.session.rollback()
        field = "mode" if conflict.field in MODE_SWITCHES else conflict.field
        return _render_environment(found, status=409, settings=_submitted_settings(request.form),
                                   settings_errors={field: str(conflict)})
    if changed:
        flash(f"Settings saved: {', '.join(SETTING_LABELS[name] for name in changed)}.", "success")
    else:
        flash("Nothing changed: the settings already had these values.", "info")
    return _back_to(found, "settings")


# -- variables ----------------------------------------------------------------------------------

@pages.post("/projects/<project>/environments/<environment>/variables")
@login_required
@require_permission("manage_environments", environment=_environment)
def save_variable(project: str, environment: str):
    found = _environment(project, environment)
    form = request.form
    name = form.get("name", "").strip()
    secret, for_hooks = "secret" in form, "for_hooks" in form
    errors: dict[str, str] = {}
    try:
        variable_name(name)
    except InvalidInput as error:
        errors["name"] = error.message
    value = form.get("value", "").replace("\r\n", "\n")
    existing = db.session.scalar(sa.select(Variable).where(Variable.environment_id == found.id,
                                                           Variable.name == name)) if not errors else None
    if existing is not None and existing.secret and not value.strip():
        # A secret is never shown, so an empty value keeps it, but only while it stays secret.
        if secret:
            value = existing.value
        else:
            errors["value"] = (f"Enter a value to make {name} visible: a secret value is never shown, "
                               "so it cannot be kept when the variable stops being secret.")
    try:
        value = VARIABLE_FIELDS["value"](value, "The value")
    except InvalidInput as error:
        errors.setdefault("value", error.message)
    if errors:
        shown = {"name": name, "value": "" if secret else value, "secret": secret, "for_hooks": for_hooks,
                 "existing_secret": existing is not None and existing.secret}
        return _render_environment(found, status=422, variable=shown, variable_errors=errors)
    _, created = environments.set_variable(found, Actor(current_user._get_current_object(), "ui"), name, value,
                                           secret=secret, for_hooks=for_hooks)
    flash(f"Variable {name} {'added' if created else 'saved'}.", "success")
    return _back_to(found, "variables")


@pages.post("/projects/<project>/environments/<environment>/variables/<name>/delete")
@login_required
@require_permission("manage_environments", environment=_environment)
def delete_variable(project: str, environment: str, name: str):
    found = _environment(project, environment)
    environments.delete_variable(found, Actor(current_user._get_current_object(), "ui"), name)
    if is_htmx():  # the button posts with hx-confirm: swap the variables section, and the audit list
        return render_template("_environment_variables_swap.html", environment=found, project=found.project,
                               can_manage=True, variable=_variable_values(found), variable_errors={},
                               notice=f"Variable {name} deleted.", events=_settings_events(found),
                               labels=SETTING_LABELS, oob=True)
    flash(f"Variable {name} deleted.", "success")
    return _back_to(found, "variables")
