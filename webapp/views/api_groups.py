"""The REST API's groups (SPEC §7): manage_users holders change them and their members and
grants; any signed-in user may read them, to name them in approval rules. The routes are the
api blueprint's (views/api.py), so their names and the route audit read as the rest of the API."""
from __future__ import annotations

import sqlalchemy as sa
from flask import jsonify, url_for

from .. import groups, releases
from ..extensions import db
from ..intake.resources import InvalidInput
from ..intake.serialize import grant_dict, group_dict
from ..intake.validate import (
    GRANT_FIELDS,
    GROUP_FIELDS,
    fields,
)
from ..models import Environment, Group, Project, User
from ..permissions import require_permission
from .api import api, api_actor, json_body, page_of


def _group(group: str) -> Group:
    return groups.get_group(group)


def _group_dict(group: Group) -> dict:
    return group_dict(group, groups.grants_of(group))


def _member(username: str) -> User:
    found = db.session.scalar(sa.select(User).where(User.username == username))
    if found is None:
        raise releases.NotFound(f"There is no user named {username[:80]}.")
    return found


@api.get("/groups")
def list_groups():
    return page_of(sa.select(Group), _group_dict)


@api.post("/groups")
@require_permission("manage_users")
def create_group():
    values = fields(json_body(), GROUP_FIELDS, required=("name",), creating="a group")
    group = groups.create_group(api_actor(), **values)
    response = jsonify(_group_dict(group))
    response.headers["Location"] = url_for("api.get_group", group=group.name)
    return response, 201


@api.get("/groups/<group>")
def get_group(group: str):
    return _group_dict(_group(group))


@api.patch("/groups/<group>")
@require_permission("manage_users")
def update_group(group: str):
    found = _group(group)
    groups.update_group(api_actor(), found, **fields(json_body(), GROUP_FIELDS))
    return _group_dict(found)


@api.delete("/groups/<group>")
@require_permission("manage_users")
def delete_group(group: str):
    groups.delete_group(api_actor(), _group(group))
    return "", 204


@api.put("/groups/<group>/members/<username>")
@require_permission("manage_users")
def add_member(group: str, username: str):
    if json_body() != {}:  # refused rather than ignored, like any field nobody reads
        raise InvalidInput("Send no body (or {}): the address names the group and the user.", 400)
    found = _group(group)
    added = groups.add_member(api_actor(), found, _member(username))
    return jsonify(_group_dict(found)), 201 if added else 200


@api.delete("/groups/<group>/members/<username>")
@require_permission("manage_users")
def remove_member(group: str, username: str):
    groups.remove_member(api_actor(), _group(group), _member(username))
    return "", 204


@api.post("/groups/<group>/grants")
@require_permission("manage_users")
def grant_to_group(group: str):
    found = _group(group)
    values = fields(json_body(), GRANT_FIELDS, required=("permission",), creating="a grant")
    path = values.get("environment")
    environment = None
    if path is not None:
        project, _, name = path.partition("/")
        environment = db.session.scalar(sa.select(Environment).join(Project).where(
            Project.name == project, Environment.name == name))
        if environment is None:
            raise InvalidInput(f"There is no environment {path[:120]}; write it as PROJECT/ENVIRONMENT, or null "
                               "for all environments.", 422)
    grant = groups.grant_to_group(api_actor(), found, values["permission"], environment)
    return jsonify(grant_dict(grant)), 201


@api.delete("/groups/<group>/grants/<int:grant_id>")
@require_permission("manage_users")
def revoke_group_grant(group: str, grant_id: int):
    groups.revoke_group_grant(api_actor(), _group(group), grant_id)
    return "", 204
