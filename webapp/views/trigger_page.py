"""The trigger form: a release of any environment the signed-in person may trigger, from a
resource list or a Terraform plan, emergency releases included."""
from __future__ import annotations

import json
import secrets

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .. import releases
from ..extensions import db
from ..intake.resources import (
    InvalidInput,
    changes_nothing,
    parse_resources,
)
from ..intake.terraform import resources_from_terraform_plan
from ..intake.trigger import parse_trigger_body
from ..models import Environment, Project, Release, User
from ..permissions import (
    PermissionDenied,
    grant_held,
    require_permission,
)
from .web import ui_actor

trigger_page = Blueprint("trigger_page", __name__)


# -- the environment chosen, for the permission decorator and the view ----------------------------------

def _chosen_environment(**_) -> Environment:
    """The environment picked in the trigger form ("project/environment")."""
    if "environment" not in g:
        chosen = request.form.get("environment", "").strip()
        project, _slash, name = chosen.partition("/")
        found = db.session.scalar(sa.select(Environment).join(Project).where(
            Project.name == project, Environment.name == name)) if project and name else None
        if found is None:
            abort(404, f"There is no environment {chosen[:130]!r}; choose one from the list.")
        g.environment = found
    return g.environment


# -- the trigger form ---------------------------------------------------------------------------

def triggerable_environments(user: User, *, emergency: bool = False) -> list[Environment]:
    """Environments where `user` holds trigger_release (with `emergency`, break_glass as well), by
    project and name."""
    query = (sa.select(Environment).join(Project, Environment.project_id == Project.id)
             .order_by(Project.name, Environment.name))
    if not user.is_admin:
        query = query.where(grant_held(user.id, "trigger_release", Environment.id))
        if emergency:
            query = query.where(grant_held(user.id, "break_glass", Environment.id))
    return list(db.session.scalars(query))


def _label(environment: Environment) -> str:
    return f"{environment.project.name}/{environment.name}"


def _render_trigger(form: dict, errors: dict[str, str], status: int = 200, *,
                    confirm_empty: bool = False) -> tuple[str, int]:
    user = current_user._get_current_object()
    choices = triggerable_environments(user)
    # The emergency part is drawn for people who hold break_glass somewhere they may trigger, and
    # names where the environment allows emergency releases at all.
    emergency = triggerable_environments(user, emergency=True)
    return render_template("trigger.html", choices=[_label(e) for e in choices], form=form, errors=errors,
                           confirm_empty=confirm_empty, emergency_offered=bool(emergency) or form.get("break_glass"),
                           emergency_allowed=[_label(e) for e in emergency if e.allow_break_glass],
                           idempotency_key=form.get("idempotency_key") or secrets.token_urlsafe(18)), status


@trigger_page.get("/trigger")
@login_required
def trigger():
    return _render_trigger({"environment": request.args.get("environment", "")}, {})


class _FieldError(Exception):
    def __init__(self, field: str, message: str, status: int) -> None:
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


def _json_field(text: str, field: str, what: str) -> object:
    try:
        return json.loads(text)
    except RecursionError:
        raise _FieldError(field, f"The {what} nests too deeply; send at most a few levels of JSON.", 400) from None
    except ValueError as error:
        where = f" (line {error.lineno}, column {error.colno})" if isinstance(error, json.JSONDecodeError) else ""
        raise _FieldError(field, f"The {what} is not valid JSON{where}: {getattr(error, 'msg', error)}.",
                          400) from None


def _checked(field: str, check, value: object):
    """Run one of the API's checks; its sentence goes beside `field`."""
    try:
        return check(value)
    except InvalidInput as error:
        raise _FieldError(field, error.message, error.status) from None


def _wanted_resources(text: str) -> list[dict]:
    upload = request.files.get("plan")
    plan_bytes = upload.read() if upload is not None and upload.filename else b""
    if plan_bytes and text:
        raise _FieldError("resources", "Paste the resources or upload a Terraform plan, not both.", 400)
    if plan_bytes:
        try:
            plan_text = plan_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _FieldError("plan", "The uploaded file is not UTF-8 text: upload the output of "
                              "`terraform show -json <planfile>`.", 400) from None
        plan = _json_field(plan_text, "plan", "uploaded plan")
        return _checked("plan", lambda value: resources_from_terraform_plan(value, "The uploaded plan"), plan)
    if not text:
        raise _FieldError("resources", "Paste the resources JSON, or upload the output of "
                          "`terraform show -json <planfile>`.", 400)
    value = _json_field(text, "resources", "resources text")
    # A pasted `terraform show -json` object is read as a plan, a list as resource changes.
    if isinstance(value, dict):
        return _checked("resources", lambda plan: resources_from_terraform_plan(plan, "The pasted plan"), value)
    return _checked("resources", parse_resources, value)


@trigger_page.post("/trigger")
@login_required
@require_permission("trigger_release", environment=_chosen_environment)
def trigger_submit():
    environment = _chosen_environment()
    form = {key: request.form.get(key, "") for key in ("environment", "resources", "ref", "description",
                                                        "idempotency_key", "break_glass_reason")}
    form["break_glass"] = "break_glass" in request.form
    ref, description = form["ref"].strip(), form["description"].strip()
    reason = None
    try:
        resources = _wanted_resources(form["resources"].strip())
        if ref:
            ref = _checked("ref", lambda value: parse_trigger_body({"resources": [], "ref": value}).ref, ref)
        _checked("description",
                 lambda value: parse_trigger_body({"resources": [], "description": value}), description)
        key = form["idempotency_key"].strip()[:255] or None
        if form["break_glass"]:
            reason = _checked("break_glass_reason", lambda value: parse_trigger_body(
                {"resources": [], "break_glass": {"reason": value}}).break_glass, form["break_glass_reason"])
    except _FieldError as error:
        return _render_trigger(form, {error.field: error.message}, error.status)
    if changes_nothing(resources) and "confirm_empty" not in request.form:
        # An uploaded plan is kept as the pasted list it became, so the confirmation does not need
        # the file chosen again.
        kept = form["resources"] or json.dumps(resources, indent=2)
        return _render_trigger({**form, "resources": kept}, {}, 422, confirm_empty=True)
    try:
        new, created = releases.trigger(environment, ui_actor(), resources, ref=ref or None, description=description,
                                        idempotency_key=key, break_glass=reason)
    except (releases.ReleaseError, PermissionDenied) as error:
        if reason is None:
            raise  # the error pages say it, as for every other action
        # An emergency release refused (its reason, the environment's switch, break_glass): beside
        # the reason, nothing created.
        db.session.rollback()
        status = error.status if isinstance(error, releases.ReleaseError) else 403
        return _render_trigger(form, {"break_glass_reason": str(error)}, status)
    flash(_triggered_message(new, created, environment), "success" if created else "info")
    return redirect(url_for("release_pages.release", release_id=new.id), 303)


def _triggered_message(release: Release, created: bool, environment: Environment) -> str:
    if not created:
        return f"This form was already sent: it triggered release #{release.id}."
    if release.break_glass_reason is None:
        return f"Release #{release.id} was triggered on {_label(environment)}."
    return (f"Emergency release #{release.id} was triggered on {_label(environment)}: it skips the hook, the approval "
            f"rules and the change windows, and someone else must review it by "
            f"{release.review_due_at:%Y-%m-%d %H:%M} UTC.")
