"""The environment page: one environment's queue (live), its history, its settings and
variables forms, and the audit trail of its settings."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm import joinedload

from .. import environments, windows
from ..environments import SettingsConflict
from ..extensions import db
from ..intake.ids import parse_id
from ..intake.resources import InvalidInput
from ..intake.validate import VARIABLE_FIELDS, variable_name
from ..live import current_version
from ..models import (
    STATES,
    AuditEvent,
    Environment,
    Group,
    Project,
    Release,
    Variable,
    utcnow,
)
from ..permissions import has_permission, require_permission
from .pages import clock, clock_moved, emergency, empty_lists, has_windows, live_releases, window_note
from .settings_form import (
    ANYONE,
    MODE_SWITCHES,
    SETTING_LABELS,
    SWITCHES,
    form_fields,
    settings_from_form,
    submitted_settings,
    weakening_sentences,
)
from .web import is_htmx, live_fragment, ui_actor

environment_pages = Blueprint("environment_pages", __name__)

HISTORY_PAGE_SIZE = 25
SETTINGS_EVENTS_SHOWN = 10


def _environment(project: str, environment: str, **_) -> Environment:
    """The environment named in the URL (shared by the permission check and the view)."""
    if "page_environment" not in g:
        found = db.session.scalar(sa.select(Environment).join(Project).options(joinedload(Environment.project))
                                  .where(Project.name == project, Environment.name == environment))
        if found is None:
            abort(404, f"There is no environment {project}/{environment}.")
        g.page_environment = found
    return g.page_environment


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
    live = live_releases(environment.id).get(environment.id, empty_lists())
    now = utcnow()
    return {"environment": environment, "project": environment.project, "version": version,
            "active": live["active"], "queue": live["queue"],
            "emergencies": [emergency(release, now) for release in live["emergencies"]],
            "window": window_note(windows.judge_environment(environment, now)),
            "clock": clock(has_windows(environment))}


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


@environment_pages.get("/projects/<project>/environments/<environment>")
@login_required
def environment(project: str, environment: str):
    return _render_environment(_environment(project, environment))


@environment_pages.get("/fragments/projects/<project>/environments/<environment>")
@login_required
def environment_fragment(project: str, environment: str):
    def render(version: str) -> str:
        # A partial, not a block of environment.html: jinja2-fragments' render_block takes the
        # context as keywords beside its own parameter named `environment`.
        return render_template("_environment_live.html",
                               **_environment_live_context(_environment(project, environment), version))

    return live_fragment(render, moved=clock_moved)


# -- settings -----------------------------------------------------------------------------------

def _back_to(environment: Environment, anchor: str):
    return redirect(url_for("environment_pages.environment", project=environment.project.name,
                            environment=environment.name, _anchor=anchor), 303)


@environment_pages.get("/projects/<project>/environments/<environment>/settings")
@environment_pages.get("/projects/<project>/environments/<environment>/variables")
@login_required
def form_address(project: str, environment: str):
    """The address a settings or variable form posts to, opened again (a reload after a refused
    save, a copied link): the environment page holds the form, showing what is saved."""
    found = _environment(project, environment)
    form = request.path.rpartition("/")[2]
    flash(f"Nothing was saved from that address: the {form} form below shows what is saved now.", "info")
    return _back_to(found, form)


@environment_pages.post("/projects/<project>/environments/<environment>/settings")
@login_required
@require_permission("manage_environments", environment=_environment)
def save_settings(project: str, environment: str):
    found = _environment(project, environment)
    values, errors = settings_from_form(request.form, found)
    if errors:
        return _render_environment(found, status=422, settings=submitted_settings(request.form),
                                   settings_errors=errors)
    # Only what the person changed, so a conflict is reported on the switch they touched.
    changes = {name: value for name, value in values.items() if getattr(found, name) != value}
    try:
        environments.check_settings_changes(found, changes)
        weakened = environments.weakened_settings(
            {name: {"old": getattr(found, name), "new": value} for name, value in changes.items()})
        if weakened and request.form.get("confirm_weakening") != "1":
            # Nothing is saved until the person has read what the change makes easier.
            return _render_environment(found, status=409, settings=submitted_settings(request.form),
                                       weakening=weakening_sentences(found, changes, weakened),
                                       resubmit=form_fields(request.form))
        changed = environments.update_environment(found, ui_actor(), changes)
    except SettingsConflict as conflict:
        db.session.rollback()
        field = "mode" if conflict.field in MODE_SWITCHES else conflict.field
        return _render_environment(found, status=409, settings=submitted_settings(request.form),
                                   settings_errors={field: str(conflict)})
    if changed:
        flash(f"Settings saved: {', '.join(SETTING_LABELS[name] for name in changed)}.", "success")
    else:
        flash("Nothing changed: the settings already had these values.", "info")
    return _back_to(found, "settings")


# -- variables ----------------------------------------------------------------------------------

@environment_pages.post("/projects/<project>/environments/<environment>/variables")
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
    _, created = environments.set_variable(found, ui_actor(), name, value,
                                           secret=secret, for_hooks=for_hooks)
    flash(f"Variable {name} {'added' if created else 'saved'}.", "success")
    return _back_to(found, "variables")


@environment_pages.post("/projects/<project>/environments/<environment>/variables/<name>/delete")
@login_required
@require_permission("manage_environments", environment=_environment)
def delete_variable(project: str, environment: str, name: str):
    found = _environment(project, environment)
    environments.delete_variable(found, ui_actor(), name)
    if is_htmx():  # the button posts with hx-confirm: swap the variables section, and the audit list
        return render_template("_environment_variables_swap.html", environment=found, project=found.project,
                               can_manage=True, variable=_variable_values(found), variable_errors={},
                               notice=f"Variable {name} deleted.", events=_settings_events(found),
                               labels=SETTING_LABELS, oob=True)
    flash(f"Variable {name} deleted.", "success")
    return _back_to(found, "variables")
