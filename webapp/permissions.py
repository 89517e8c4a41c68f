"""The permission registry, the check behind every action, and require_permission()."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask_login import current_user

from .extensions import db, login_manager
from .models import Environment, Grant, User

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
