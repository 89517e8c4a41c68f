"""Admin pages for groups: create, rename and delete them, their members, and the grants a
group's members hold while they are members. Thin: every change goes through groups.py."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from .. import accounts, groups
from ..extensions import db
from ..models import Group, User
from ..permissions import PERMISSIONS, require
from ..permissions import require_permission as gate
from ..releases import WrongState
from .admin import Errors, environment_in_form
from .web import is_htmx, signed_in_user, ui_actor

admin_groups = Blueprint("admin_groups", __name__, url_prefix="/admin")


def _group(group: str, **_) -> Group:
    return groups.get_group(group)


def _render_groups(errors: Errors | None = None, values: dict | None = None, status: int = 200):
    return render_template("admin/groups.html", groups=groups.groups(), grants_of=groups.grants_of,
                           grant_label=accounts.grant_label, errors=errors or {}, values=values or {}), status


@admin_groups.get("/groups")
@login_required
def groups_list():
    require(signed_in_user(), "manage_users")
    return _render_groups()


@admin_groups.post("/groups")
@login_required
@gate("manage_users")
def create_group():
    values = {"name": request.form.get("name", ""), "description": request.form.get("description", "")}
    try:
        group = groups.create_group(ui_actor(), **values)
    except accounts.FieldError as error:
        return _render_groups({error.field: str(error)}, values, error.status)
    flash(f"Created the group {group.name}. Add its members below.", "success")
    return redirect(url_for("admin_groups.group", group=group.name))


def _render_group(group: Group, errors: dict[str, Errors] | None = None, values: dict[str, dict] | None = None,
                  status: int = 200):
    errors, values = errors or {}, values or {}
    return render_template(
        "admin/group.html", group=group, grants=groups.grants_of(group), scope_label=accounts.scope_label,
        permissions=PERMISSIONS, environments=accounts.all_environments(),
        named_by=groups.environments_naming(group.name), pending=groups.pending_releases_naming(group.name),
        people=[user for user in accounts.users() if user not in group.members],
        edit_errors=errors.get("edit", {}), member_errors=errors.get("member", {}),
        grant_errors=errors.get("grant", {}), delete_error=errors.get("delete", {}).get("group"),
        edit_values=values.get("edit") or {"name": group.name, "description": group.description},
        member_values=values.get("member", {}), grant_values=values.get("grant", {})), status


@admin_groups.get("/groups/<group>")
@login_required
def group(group: str):
    require(signed_in_user(), "manage_users")
    return _render_group(_group(group))


@admin_groups.post("/groups/<group>")
@login_required
@gate("manage_users")
def update_group(group: str):
    found = _group(group)
    values = {"name": request.form.get("name", ""), "description": request.form.get("description", "")}
    try:
        changed = groups.update_group(ui_actor(), found, **values)
    except accounts.FieldError as error:
        db.session.refresh(found)
        return _render_group(found, {"edit": {error.field: str(error)}}, {"edit": values}, error.status)
    if "name" in changed:
        flash(f"Renamed the group {group} to {found.name}; the approval rules naming it follow.", "success")
    else:
        flash(f"Saved {found.name}." if changed else "Nothing changed.", "success")
    return redirect(url_for("admin_groups.group", group=found.name))


@admin_groups.post("/groups/<group>/delete")
@login_required
@gate("manage_users")
def delete_group(group: str):
    found = _group(group)
    try:
        groups.delete_group(ui_actor(), found)
    except WrongState as error:  # approval rules name it
        if is_htmx():
            raise  # the message goes where htmx shows it (errors.py)
        return _render_group(_group(group), {"delete": {"group": str(error)}}, status=error.status)
    flash(f"Deleted the group {group}; its members keep their own grants.", "success")
    return redirect(url_for("admin_groups.groups_list"))


@admin_groups.post("/groups/<group>/members")
@login_required
@gate("manage_users")
def add_member(group: str):
    found = _group(group)
    username = request.form.get("username", "").strip()
    user = db.session.scalar(sa.select(User).where(User.username == username)) if username else None
    if user is None:
        sentence = (f"There is no user named {username[:80]}; check the spelling, or create the user first."
                    if username else "Enter the username of the person to add.")
        return _render_group(found, {"member": {"username": sentence}}, {"member": {"username": username}}, 422)
    if groups.add_member(ui_actor(), found, user):
        flash(f"Added {user.username} to {found.name}.", "success")
    else:
        flash(f"{user.username} is in {found.name} already; nothing changed.", "success")
    return redirect(url_for("admin_groups.group", group=found.name) + "#members")


@admin_groups.post("/groups/<group>/members/<int:user_id>/remove")
@login_required
@gate("manage_users")
def remove_member(group: str, user_id: int):
    found = _group(group)
    user = accounts.get_user(user_id)
    groups.remove_member(ui_actor(), found, user)
    flash(f"Removed {user.username} from {found.name}; the group's grants are no longer theirs.", "success")
    return redirect(url_for("admin_groups.group", group=found.name) + "#members")


@admin_groups.post("/groups/<group>/grants")
@login_required
@gate("manage_users")
def grant_to_group(group: str):
    found = _group(group)
    values = {"permission": request.form.get("permission", ""), "environment": request.form.get("environment", "")}
    try:
        environment = environment_in_form(values["environment"])
        groups.grant_to_group(ui_actor(), found, values["permission"], environment)
    except accounts.FieldError as error:
        return _render_group(found, {"grant": {error.field: str(error)}}, {"grant": values}, error.status)
    flash(f"Granted \u201c{PERMISSIONS[values['permission']]}\u201d to the group {found.name} on "
          f"{accounts.scope_label(environment)}: every member holds it now.", "success")
    return redirect(url_for("admin_groups.group", group=found.name) + "#grants")


@admin_groups.post("/groups/<group>/grants/<int:grant_id>/revoke")
@login_required
@gate("manage_users")
def revoke_group_grant(group: str, grant_id: int):
    found = _group(group)
    groups.revoke_group_grant(ui_actor(), found, grant_id)
    flash(f"Revoked the grant from the group {found.name}.", "success")
    return redirect(url_for("admin_groups.group", group=found.name) + "#grants")
