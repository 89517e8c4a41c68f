"""REST API (`/api/v1`, SPEC §7): thin views over releases/ and environments.py."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
import yaml
from flask import Blueprint, abort, current_app, g, jsonify, request, url_for
from flask_login import current_user
from redis.exceptions import RedisError

from .. import environments, releases
from ..extensions import db, redis_connection
from ..intake.ids import MAX_ID, parse_id
from ..intake.resources import InvalidInput, changes_nothing, check_slug
from ..intake.serialize import environment_dict, event_dict, project_dict, release_dict
from ..intake.trigger import parse_trigger_body
from ..intake.validate import (
    ENVIRONMENT_FIELDS,
    PROJECT_FIELDS,
    VARIABLE_FIELDS,
    fields,
    variable_name,
)
from ..models import STATES, AuditEvent, Environment, Project, Release
from ..permissions import require_permission
from ..transactions import Actor
from .web import own_release, release_environment, release_in_url

api = Blueprint("api", __name__, url_prefix="/api/v1")
# Answered without signing in: a load balancer's health check, and the API's own description.
PUBLIC_ENDPOINTS = frozenset({"api.health", "api.openapi"})
OPENAPI_DOCUMENT = Path(__file__).resolve().parent.parent / "openapi.yaml"


def load_openapi() -> dict:
    """The API's OpenAPI document (webapp/openapi.yaml), as data."""
    with OPENAPI_DOCUMENT.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@api.record_once
def _read_openapi(state) -> None:
    # Once at start-up, when the blueprint is registered: every request answers the same document.
    state.app.extensions["openapi"] = load_openapi()


@api.before_request
def _signed_in_only():
    if request.endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        from ..extensions import login_manager

        return login_manager.unauthorized()


def api_actor() -> Actor:
    return Actor(current_user._get_current_object(), "api")


def json_body() -> object:
    if not request.get_data(cache=True):
        return {}
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:
        raise InvalidInput("The request body nests too deeply; send at most a few levels of JSON.", 400) from None
    if body is None:
        raise InvalidInput("The request body is not valid JSON; send a JSON object.", 400)
    return body


# -- lookups that the permission decorator and the views share --------------------------------

def _project(project: str, **_) -> Project:
    found = db.session.scalar(sa.select(Project).where(Project.name == project))
    if found is None:
        abort(404, f"Project {project!r} does not exist.")
    return found


def _environment(project: str, environment: str, **_) -> Environment:
    if "environment" not in g:
        found = db.session.scalar(sa.select(Environment).join(Project).where(
            Project.name == project, Environment.name == environment))
        if found is None:
            abort(404, f"Environment {project}/{environment} does not exist.")
        g.environment = found
    return g.environment


def page_of(query, serialize) -> dict:
    try:
        limit = min(max(int(request.args.get("limit", 50)), 1), 500)
    except ValueError:
        raise InvalidInput("limit must be a whole number.", 400) from None
    before = None
    if "before" in request.args:
        before = parse_id(request.args["before"])
        if before is None:
            raise InvalidInput(f"before must be an id from 1 to {MAX_ID}, as in the \"next\" link of the "
                               "previous page.", 400)
    entity = query.column_descriptions[0]["entity"]
    if before is not None:
        query = query.where(entity.id < before)
    rows = list(db.session.scalars(query.order_by(entity.id.desc()).limit(limit + 1)))
    next_url = None
    if len(rows) > limit:
        rows = rows[:limit]
        args = {**request.args.to_dict(), "before": rows[-1].id, "limit": limit}
        next_url = url_for(request.endpoint, **request.view_args, **args)
    return {"items": [serialize(row) for row in rows], "next": next_url}


# -- health ------------------------------------------------------------------------------------

@api.get("/health")
def health():
    failing = []
    try:
        db.session.execute(sa.text("SELECT 1"))
        db.session.rollback()
    except sa.exc.SQLAlchemyError:
        failing.append("database")
    try:
        redis_connection().ping()
    except (RedisError, RuntimeError):
        failing.append("redis")
    if failing:
        return jsonify(status="degraded", failing=failing), 503
    return jsonify(status="ok")


@api.get("/openapi.json")
def openapi():
    """This API's contract (webapp/openapi.yaml) as JSON, for any OpenAPI viewer or client."""
    return jsonify(current_app.extensions["openapi"])


# -- projects and environments -----------------------------------------------------------------

@api.get("/projects")
def list_projects():
    return page_of(sa.select(Project), project_dict)


# What environments.create_project takes; change windows and freezes come afterwards, by PATCH.
PROJECT_CREATABLE = ("name", "repo", "branch", "hook_ref", "web_url_template")


@api.post("/projects")
@require_permission("manage_environments")
def create_project():
    creatable = {key: PROJECT_FIELDS[key] for key in PROJECT_CREATABLE}
    values = fields(json_body(), creatable, required=("name", "repo"), creating="a project")
    project = environments.create_project(api_actor(), **values)
    return jsonify(project_dict(project)), 201


@api.patch("/projects/<project>")
@require_permission("manage_environments")
def update_project(project: str):
    """Change a project's repo, branch, hook_ref or web_url_template (the first three move the gate:
    audited and announced to the environments they move, like the admin form)."""
    found = _project(project)
    editable = {key: PROJECT_FIELDS[key] for key in environments.PROJECT_EDITABLE}
    environments.update_project(api_actor(), found, fields(json_body(), editable))
    return project_dict(found)


@api.get("/projects/<project>/environments")
def list_environments(project: str):
    found = _project(project)
    return {"items": [environment_dict(e) for e in found.environments], "next": None}


@api.post("/projects/<project>/environments")
@require_permission("manage_environments")
def create_environment(project: str):
    found = _project(project)
    body = json_body()
    spec = {"name": lambda value, _name: check_slug(value, "environment name"), **ENVIRONMENT_FIELDS}
    values = fields(body, spec, required=("name", "release_stream"), creating="an environment")
    environment = environments.create_environment(found, api_actor(), **values)
    return jsonify(environment_dict(environment)), 201


@api.get("/projects/<project>/environments/<environment>")
def get_environment(project: str, environment: str):
    return environment_dict(_environment(project, environment))


@api.patch("/projects/<project>/environments/<environment>")
@require_permission("manage_environments", environment=_environment)
def update_environment(project: str, environment: str):
    found = _environment(project, environment)
    environments.update_environment(found, api_actor(), fields(json_body(), ENVIRONMENT_FIELDS))
    return environment_dict(found)


@api.get("/projects/<project>/environments/<environment>/events")
def environment_events(project: str, environment: str):
    """Settings and variable changes of an environment, newest first."""
    found = _environment(project, environment)
    return page_of(sa.select(AuditEvent).where(AuditEvent.environment_id == found.id,
                                             AuditEvent.release_id.is_(None)), event_dict)


@api.put("/projects/<project>/environments/<environment>/variables/<name>")
@require_permission("manage_environments", environment=_environment)
def put_variable(project: str, environment: str, name: str):
    found = _environment(project, environment)
    values = fields(json_body(), VARIABLE_FIELDS, required=("value",))
    variable, created = environments.set_variable(found, api_actor(), variable_name(name), values["value"],
                                                  secret=values.get("secret", False),
                                                  for_hooks=values.get("for_hooks", False))
    shown = {"name": variable.name, "secret": variable.secret, "for_hooks": variable.for_hooks,
             "value": None if variable.secret else variable.value}
    return jsonify(shown), 201 if created else 200


@api.delete("/projects/<project>/environments/<environment>/variables/<name>")
@require_permission("manage_environments", environment=_environment)
def delete_variable(project: str, environment: str, name: str):
    environments.delete_variable(_environment(project, environment), api_actor(), name)
    return "", 204


# -- releases -----------------------------------------------------------------------------------

@api.get("/projects/<project>/environments/<environment>/releases")
def list_releases(project: str, environment: str):
    found = _environment(project, environment)
    query = sa.select(Release).where(Release.environment_id == found.id)
    state = request.args.get("state")
    if state:
        if state not in STATES:
            raise InvalidInput(f"Unknown state {state[:40]!r}; use one of {', '.join(STATES)}.", 400)
        query = query.where(Release.state == state)
    return page_of(query, release_dict)


@api.post("/projects/<project>/environments/<environment>/releases")
@require_permission("trigger_release", environment=_environment)
def trigger_release(project: str, environment: str):
    found = _environment(project, environment)
    wanted = parse_trigger_body(json_body())
    key = request.headers.get("Idempotency-Key", "").strip() or None
    if key is not None and len(key) > 255:
        raise InvalidInput("The Idempotency-Key header must be at most 255 characters.", 400)
    release, created = releases.trigger(found, api_actor(), wanted.resources, ref=wanted.ref,
                                        description=wanted.description, idempotency_key=key,
                                        break_glass=wanted.break_glass)
    # Accepted, but said: a release that changes nothing still runs the deploy.
    warnings = [EMPTY_RELEASE] if changes_nothing(wanted.resources) else []
    response = jsonify({**release_dict(release), "warnings": warnings})
    response.status_code = 202 if created else 200
    response.headers["Location"] = url_for("api.get_release", release_id=release.id)
    return response


EMPTY_RELEASE = ("The release changes no resources (the plan lists none, or only no-op changes, or the list is "
                 "empty), yet its release command runs all the same.")


@api.get("/releases/<int:release_id>")
def get_release(release_id: int):
    return release_dict(release_in_url(release_id))


@api.get("/releases/<int:release_id>/since")
def release_since(release_id: int):
    """What changed since the environment's last successful release, alone (null until computed)."""
    return jsonify(release_in_url(release_id).since)


@api.get("/releases/<int:release_id>/events")
def release_events(release_id: int):
    release = release_in_url(release_id)
    events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.release_id == release.id)
                                .order_by(AuditEvent.id))
    return {"items": [event_dict(e) for e in events], "next": None}


def _comment() -> str:
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"comment"}:
        raise InvalidInput('Send a JSON object with an optional "comment".', 400)
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > 5000:
        raise InvalidInput("comment must be a string of at most 5000 characters.", 400)
    return comment.strip()


@api.post("/releases/<int:release_id>/approve")
@require_permission("approve_release", environment=release_environment)
def approve(release_id: int):
    """The release after the approval: still pending while rules remain ("approval" says which),
    else approved with its bot release. 409 with a sentence when the approval would count for no rule."""
    releases.approve(release_id, api_actor(), _comment())
    return release_dict(releases.get_release(release_id))


@api.post("/releases/<int:release_id>/reject")
@require_permission("approve_release", environment=release_environment)
def reject(release_id: int):
    return release_dict(releases.reject(release_id, api_actor(), _comment()))


@api.post("/releases/<int:release_id>/review")
@require_permission("approve_release", environment=release_environment)
def review(release_id: int):
    """Mark a finished emergency release reviewed: {"comment": "what was done, and was it right"}."""
    return release_dict(releases.review(release_id, api_actor(), _comment()))


@api.post("/releases/<int:release_id>/cancel")
@require_permission("cancel_release", environment=release_environment, or_if=own_release)
def cancel(release_id: int):
    return release_dict(releases.cancel(release_id, api_actor()))


@api.post("/releases/<int:release_id>/abort")
@require_permission("cancel_release", environment=release_environment)
def abort_release(release_id: int):
    return release_dict(releases.abort(release_id, api_actor()))


@api.post("/releases/<int:release_id>/finish")
@require_permission("trigger_release", environment=release_environment)
def finish(release_id: int):
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"result", "log"}:
        raise InvalidInput('Send a JSON object with "result" (SUCCEEDED or FAILED) and an optional "log".', 400)
    result, log = body.get("result"), body.get("log") or ""
    if result not in ("SUCCEEDED", "FAILED"):
        raise InvalidInput('result must be "SUCCEEDED" or "FAILED".', 422)
    if not isinstance(log, str) or len(log) > 1_000_000:
        raise InvalidInput("log must be a string of at most 1,000,000 characters.", 400)
    return release_dict(releases.finish(release_id, api_actor(), result, log))
