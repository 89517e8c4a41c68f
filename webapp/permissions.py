"""The permission registry, the check behind every action, and require_permission()."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask_login import current_user

from .extensions import db, login_manager
from .models import Environment, Grant, Release, User

PERMISSIONS = {
    "trigger_release": "Trigger release",
    "approve_release": "Release Approval/Reject",
    "cancel_release": "Cancel release",
    "manage_environments": "Manage environments",
    "manage_users": "Manage users",
}
GLOBAL_ONLY = frozenset({"manage_users"})


class PermissionDenied(Exception):
    """Carries the sentence shown to the user (HTTP 403)."""


def check_name(permission: str) -> str:
    if permission not in PERMISSIONS:
        raise ValueError(f"Unknown permission {permission!r}; known: {', '.join(PERMISSIONS)}.")
    return permission


def has_permission(user: User | None, permission: str, environment: Environment | None = None) -> bool:
    """Whether `user` holds `permission` for `environment` (None: for every environment)."""
    check_name(permission)
    if user is None or not getattr(user, "is_authenticated", False) or not user.active:
        return False
    if user.is_admin:
        return True
    scope = Grant.environment_id.is_(None)
    if environment is not None:
        scope = scope | (Grant.environment_id == environment.id)
    query = db.select(Grant.id).where(Grant.user_id == user.id, Grant.permission == permission, scope).limit(1)
    return db.session.execute(query).first() is not None


def has_permission_somewhere(user: User | None, permission: str) -> bool:
    """Whether `user` holds `permission` for at least one environment (to draw a link)."""
    check_name(permission)
    if user is None or not getattr(user, "is_authenticated", False) or not user.active:
        return False
    if user.is_admin:
        return True
    query = db.select(Grant.id).where(Grant.user_id == user.id, Grant.permission == permission).limit(1)
    return db.session.execute(query).first() is not None


def require(user: User | None, permission: str, environment: Environment | None = None) -> None:
    if not has_permission(user, permission, environment):
        where = f" on {environment.project.name}/{environment.name}" if environment is not None else ""
        raise PermissionDenied(
            f"You need the \u201c{PERMISSIONS[permission]}\u201d permission{where} to do this; "
            "ask an admin for a grant.")


def require_permission(permission: str, *, environment: Callable[..., Environment | None] | None = None,
                       or_if: Callable[..., bool] | None = None) -> Callable:
    """Gate a view that changes state.

    `environment(**view_args)` names the environment the permission must cover (None
    means all environments); `or_if(**view_args)` lets the action through without the
    permission (e.g. a triggerer cancelling their own queued release). Views resolved
    this way stash what they looked up on `g` so they need not query twice.
    """
    check_name(permission)

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()  # sign-in redirect, or 401 + HX-Redirect
            scope = environment(**kwargs) if environment is not None else None
            if not (or_if is not None and or_if(**kwargs)):
                require(current_user._get_current_object(), permission, scope)
            return view(*args, **kwargs)

        wrapper.required_permission = permission
        return wrapper

    return decorate


def permission_context() -> dict:
    """Template helper: `can('approve_release', environment)`."""
    return {"can": lambda permission, environment=None: has_permission(current_user, permission, environment),
            "can_somewhere": lambda permission: has_permission_somewhere(current_user, permission),
            "PERMISSIONS": PERMISSIONS}


# -- who may decide or cancel a release: drawing buttons, the inbox, mail recipients -------------
# releases.py enforces the same rules when the action is taken (_check_decider, cancel).

def may_decide(release: Release, user: User | None) -> bool:
    """Whether `user` may approve or reject `release` (SPEC §6: never one's own, unless allowed)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if release.triggered_by_id == user.id and not release.environment.allow_self_approval:
        return False
    return has_permission(user, "approve_release", release.environment)


def decidable_releases(user: User):
    """SELECT of the PENDING_APPROVAL releases `user` may decide: the rule of may_decide in SQL."""
    query = (sa.select(Release).join(Environment, Release.environment_id == Environment.id)
             .where(Release.state == "PENDING_APPROVAL"))
    if not user.is_admin:
        query = query.where(sa.select(Grant.id).where(
            Grant.user_id == user.id, Grant.permission == "approve_release",
            Grant.environment_id.is_(None) | (Grant.environment_id == Release.environment_id)).exists())
    return query.where(Release.triggered_by_id.is_(None) | (Release.triggered_by_id != user.id)
                       | Environment.allow_self_approval)


def may_cancel(release: Release, user: User | None) -> bool:
    """The triggerer may cancel their own queued or pending release without cancel_release."""
    return user is not None and release.triggered_by_id == user.id
