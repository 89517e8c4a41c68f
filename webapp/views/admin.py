"""Admin pages: users and grants, projects and environments, and each user's own API tokens and
Slack links (groups are admin_groups.py).

Thin: every change goes through accounts.py or environments.py. Invalid
input re-renders the form with a sentence beside the field (422, or 409 for a conflict).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

from .. import accounts, environments, groups, windows
from ..extensions import db
from ..intake.ids import parse_id
from ..intake.resources import InvalidInput, check_slug
from ..intake.validate import ENVIRONMENT_FIELDS, PROJECT_FIELDS
from ..models import Environment, Project, User, utcnow
from ..notify import slack, slack_links
from ..permissions import PERMISSIONS, PermissionDenied, has_permission, has_permission_somewhere, require
from ..permissions import require_permission as gate
from ..releases import ReleaseError
from .web import signed_in_user, ui_actor

admin = Blueprint("admin", __name__, url_prefix="/admin")

Errors = dict[str, str]
PROJECT_LABELS = {"name": "Name", "repo": "Repository", "branch": "Branch", "hook_ref": "Hook ref",
                  "web_url_template": "Commit web address", "change_windows": "Change windows",
                  "freezes": "Freezes"}
PROJECT_TEXT = ("repo", "branch", "hook_ref", "web_url_template")
ENVIRONMENT_LABELS = {"release_stream": "Release stream", "release_command": "Release command"}


def _check(values: dict[str, Any], checks: dict[str, Callable[[Any], Any]]) -> tuple[dict[str, Any], Errors]:
    """Run each field's check; collect every field's sentence rather than stopping at the first."""
    clean, errors = {}, {}
    for key, value in values.items():
        try:
            clean[key] = checks[key](value)
        except (InvalidInput, accounts.FieldError) as error:
            errors[key] = error.message if isinstance(error, InvalidInput) else str(error)
    return clean, errors


def _spec_checks(spec: dict, labels: dict[str, str]) -> dict[str, Callable[[Any], Any]]:
    return {key: (lambda value, key=key: spec[key](value, labels.get(key, key))) for key in spec}


# -- index -------------------------------------------------------------------------------------

@admin.get("/")
@login_required
def index():
    me = signed_in_user()
    if not (has_permission(me, "manage_users") or has_permission_somewhere(me, "manage_environments")):
        raise PermissionDenied("The admin pages are for people who manage users or environments; "
                               "ask an admin for a grant if you need them. Your API tokens are under "
                               "\u201cAPI tokens\u201d.")
    return render_template("admin/index.html", manage_users=has_permission(me, "manage_users"),
                           manage_all_environments=has_permission(me, "manage_environments"),
                           managed=[] if me.is_admin else accounts.managed_environments(me))


# -- users and grants --------------------------------------------------------------------------

ALL_ENVIRONMENTS = "all"  # a grant form's "Where" for every environment


def environment_in_form(scope: str) -> Environment | None:
    """The environment a grant form names by id (`all`: all environments), or FieldError. There
    is no default: a grant for everywhere is chosen, never left over from an untouched select."""
    if not scope:
        raise accounts.FieldError("Choose where the grant holds: all environments, or one environment.",
                                  "environment")
    if scope == ALL_ENVIRONMENTS:
        return None
    environment_id = parse_id(scope)
    environment = db.session.get(Environment, environment_id) if environment_id is not None else None
    if environment is None:
        raise accounts.FieldError("That environment does not exist any more; choose another.", "environment")
    return environment


def _user(user_id: int, **_) -> User:
    return accounts.get_user(user_id)


def _render_users(errors: Errors | None = None, values: dict | None = None, status: int = 200):
    return render_template("admin/users.html", users=accounts.users(), grants_of=accounts.grants_of,
                           via_groups=groups.grants_through_groups, grant_label=accounts.grant_label,
                           errors=errors or {}, values=values or {}), status


@admin.get("/users")
@login_required
def users():
    require(signed_in_user(), "manage_users")
    return _render_users()


@admin.post("/users")
@login_required
@gate("manage_users")
def create_user():
    form = request.form
    values = {"username": form.get("username", ""), "email": form.get("email", ""),
              "password": form.get("password", "")}
    _, errors = _check(values, {"username": accounts.check_username, "email": accounts.check_email,
                                "password": accounts.check_password})
    shown = {"username": values["username"], "email": values["email"], "is_admin": "is_admin" in form}
    if errors:
        return _render_users(errors, shown, 422)
    try:
        user = accounts.create_user(ui_actor(), username=values["username"], email=values["email"],
                                    password=values["password"], is_admin="is_admin" in form)
    except accounts.FieldError as error:
        return _render_users({error.field: str(error)}, shown, error.status)
    flash(f"Created {user.username}. They can sign in now; grant them permissions below.", "success")
    return redirect(url_for("admin.user", user_id=user.id))


def _render_user(user: User, errors: Errors | None = None, values: dict | None = None, status: int = 200):
    return render_template(
        "admin/user.html", user=user, grants=accounts.grants_of(user), scope_label=accounts.scope_label,
        via_groups=groups.grants_through_groups(user),
        environments=accounts.all_environments(), active_tokens=accounts.active_token_count(user),
        permissions=PERMISSIONS, errors=errors or {}, values=values or {}), status


@admin.get("/users/<int:user_id>")
@login_required
def user(user_id: int):
    require(signed_in_user(), "manage_users")
    return _render_user(_user(user_id))


@admin.post("/users/<int:user_id>/deactivate")
@login_required
@gate("manage_users")
def deactivate_user(user_id: int):
    found = _user(user_id)
    revoked = accounts.deactivate_user(ui_actor(), found)
    flash(f"Deactivated {found.username}: signed out everywhere and {revoked} API token(s) revoked.", "success")
    return redirect(url_for("admin.user", user_id=user_id))


@admin.post("/users/<int:user_id>/reactivate")
@login_required
@gate("manage_users")
def reactivate_user(user_id: int):
    found = _user(user_id)
    accounts.reactivate_user(ui_actor(), found)
    flash(f"Reactivated {found.username}. Their old API tokens stay revoked.", "success")
    return redirect(url_for("admin.user", user_id=user_id))


@admin.post("/users/<int:user_id>/password")
@login_required
@gate("manage_users")
def reset_password(user_id: int):
    found = _user(user_id)
    try:
        accounts.reset_password(ui_actor(), found, request.form.get("password", ""))
    except accounts.FieldError as error:
        return _render_user(found, {error.field: str(error)}, status=error.status)
    flash(f"Set a new password for {found.username}; tell them through a channel you trust.", "success")
    return redirect(url_for("admin.user", user_id=user_id))


@admin.post("/users/<int:user_id>/grants")
@login_required
@gate("manage_users")
def grant(user_id: int):
    found = _user(user_id)
    permission = request.form.get("permission", "")
    scope = request.form.get("environment", "")
    values = {"permission": permission, "environment": scope}
    try:
        environment = environment_in_form(scope)
        accounts.grant_permission(ui_actor(), found, permission, environment)
    except accounts.FieldError as error:
        return _render_user(found, {error.field: str(error)}, values, error.status)
    flash(f"Granted \u201c{PERMISSIONS[permission]}\u201d to {found.username} on "
          f"{accounts.scope_label(environment)}.", "success")
    return redirect(url_for("admin.user", user_id=user_id))


@admin.post("/users/<int:user_id>/grants/<int:grant_id>/revoke")
@login_required
@gate("manage_users")
def revoke_grant(user_id: int, grant_id: int):
    found = _user(user_id)
    accounts.revoke_grant(ui_actor(), found, grant_id)
    flash(f"Revoked the grant from {found.username}.", "success")
    return redirect(url_for("admin.user", user_id=user_id))


# -- projects and environments -----------------------------------------------------------------

def _project(project: str, **_) -> Project:
    found = db.session.scalar(sa.select(Project).where(Project.name == project))
    if found is None:
        abort(404, f"There is no project named {project}.")
    return found


def _render_projects(errors: Errors | None = None, values: dict | None = None, status: int = 200):
    listed = list(db.session.scalars(sa.select(Project).order_by(Project.name)))
    return render_template("admin/projects.html", projects=listed, errors=errors or {},
                           values=values or {"branch": "main"}), status


@admin.get("/projects")
@login_required
def projects_list():
    require(signed_in_user(), "manage_environments")
    return _render_projects()


@admin.post("/projects")
@login_required
@gate("manage_environments")
def create_project():
    form = request.form
    values = {key: form.get(key, "") for key in ("name", *PROJECT_TEXT)}
    clean, errors = _check(values, _spec_checks(PROJECT_FIELDS, PROJECT_LABELS))
    if errors:
        return _render_projects(errors, values, 422)
    try:
        project = environments.create_project(ui_actor(), **clean)
    except ReleaseError as error:  # the name is taken
        return _render_projects({"name": str(error)}, values, error.status)
    flash(f"Created project {project.name}. Add its environments below.", "success")
    return redirect(url_for("admin.project", project=project.name))


def _render_project(project: Project, errors: dict[str, Errors] | None = None,
                    values: dict[str, dict] | None = None, status: int = 200):
    errors, values = errors or {}, values or {}
    return render_template(
        "admin/project.html", project=project,
        edit_errors=errors.get("edit", {}), env_errors=errors.get("environment", {}),
        edit_values=values.get("edit") or {**{key: getattr(project, key) or "" for key in PROJECT_TEXT},
                                           "change_windows": windows.window_lines(project.change_windows),
                                           "freezes": windows.freeze_lines(project.freezes)},
        env_values=values.get("environment") or {"mode": "approval"}), status


@admin.get("/projects/<project>")
@login_required
def project(project: str):
    require(signed_in_user(), "manage_environments")
    return _render_project(_project(project))


@admin.post("/projects/<project>")
@login_required
@gate("manage_environments")
def update_project(project: str):
    found = _project(project)
    form = request.form
    values = {key: form.get(key, "") for key in PROJECT_TEXT}
    clean, errors = _check(values, _spec_checks(PROJECT_FIELDS, PROJECT_LABELS))
    lines = {"change_windows": lambda raw, label: windows.windows_from_lines(raw, label, nullable=False),
             "freezes": windows.freezes_from_lines}
    for key, parse in lines.items():
        if key not in form:
            continue  # a form without the box leaves the setting alone
        values[key] = form[key]
        try:
            clean[key] = PROJECT_FIELDS[key](parse(form[key].replace("\r\n", "\n"), PROJECT_LABELS[key]),
                                             PROJECT_LABELS[key])
        except windows.WindowError as error:
            errors[key] = str(error)
        except InvalidInput as error:
            errors[key] = error.message
    if errors:
        return _render_project(found, {"edit": errors}, {"edit": values}, 422)
    changed = environments.update_project(ui_actor(), found, clean)
    flash(f"Saved {found.name}: changed {', '.join(changed)}." if changed else "Nothing changed.", "success")
    return redirect(url_for("admin.project", project=found.name))


@admin.post("/projects/<project>/environments")
@login_required
@gate("manage_environments")
def create_environment(project: str):
    found = _project(project)
    form = request.form
    values = {"name": form.get("name", ""), "release_stream": form.get("release_stream", ""),
              "release_command": form.get("release_command", "")}
    checks = {"name": lambda value: check_slug(value.strip(), "environment name"),
              **_spec_checks(ENVIRONMENT_FIELDS, ENVIRONMENT_LABELS)}
    clean, errors = _check(values, checks)
    values["mode"] = form.get("mode", "")
    mode = environments.MODES.get(values["mode"])
    if mode is None:
        errors["mode"] = environments.MODE_CHOICE
    if errors:
        return _render_project(found, {"environment": errors}, {"environment": values}, 422)
    name = clean.pop("name")
    try:
        environment = environments.create_environment(found, ui_actor(), name=name, **clean, **mode)
    except ReleaseError as error:  # the name is taken: one mode cannot turn on both switches
        field = getattr(error, "field", "name")
        return _render_project(found, {"environment": {field: str(error)}}, {"environment": values}, error.status)
    flash(f"Created {found.name}/{environment.name}. Its page holds the rest of its settings.", "success")
    return redirect(url_for("admin.project", project=found.name))


# -- API tokens: every signed-in user, their own only ------------------------------------------

def _render_tokens(errors: Errors | None = None, values: dict | None = None, created: str | None = None,
                   status: int = 200, slack_code: str | None = None):
    return render_template("admin/tokens.html", tokens=accounts.tokens_of(signed_in_user()), now=utcnow(),
                           errors=errors or {}, values=values or {}, created=created,
                           lifetimes=accounts.TOKEN_LIFETIMES, default_days=accounts.DEFAULT_TOKEN_DAYS,
                           never=accounts.NEVER,
                           slack_on=slack.configured(), slack_links=slack_links.links_of(signed_in_user()),
                           slack_code=slack_code, code_minutes=slack_links.CODE_MINUTES), status


@admin.get("/tokens")
@login_required
def tokens():
    return _render_tokens()


@admin.post("/tokens")
@login_required
def create_token():
    values = {"name": request.form.get("name", ""), "expires_in_days": request.form.get("expires_in_days", "")}
    clean, errors = _check(values, {"name": accounts.check_token_name,
                                    "expires_in_days": accounts.check_expiry_days})
    if errors:
        return _render_tokens(errors, values, status=422)
    token = accounts.create_api_token(ui_actor(), clean["name"], clean["expires_in_days"])
    # Shown in this answer only: it is not stored, and a reload does not bring it back.
    return _render_tokens(created=token, values={"created_never": clean["expires_in_days"] is None}, status=201)


@admin.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    token = accounts.revoke_api_token(ui_actor(), token_id)
    flash(f"Revoked the token {token.name!r}; programs using it are refused from now on.", "success")
    return redirect(url_for("admin.tokens"))


# -- Slack: every signed-in user links their own Slack users ----------------------------------

@admin.post("/tokens/slack-code")
@login_required
def create_slack_code():
    # Shown in this answer only, like a new token: only its hash is stored.
    return _render_tokens(slack_code=slack_links.issue_code(signed_in_user()), status=201)


@admin.post("/tokens/slack-links/<int:link_id>/unlink")
@login_required
def unlink_slack(link_id: int):
    slack_links.unlink(signed_in_user(), link_id)
    flash("Unlinked: that Slack user can no longer act as you.", "success")
    return redirect(url_for("admin.tokens"))
