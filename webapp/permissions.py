"""The permission registry, the check behind every action, and require_permission()."""
from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa
from flask_login import current_user
from sqlalchemy.orm import selectinload

from .extensions import db, login_manager
from .models import Environment, Grant, Release, User, group_members

PERMISSIONS = {
    "trigger_release": "Trigger release",
    "approve_release": "Release Approval/Reject",
    "cancel_release": "Cancel release",
    "break_glass": "Emergency release (break-glass)",
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


ANYWHERE = object()  # grant_held(): a grant for any environment will do


def grant_held(user_id: Any, permission: str, environment_id: Any = None) -> sa.Exists:
    """SQL: the user `user_id` (a value or a column) holds `permission`, granted to them or to a
    group they are in, for the environment `environment_id` (a value or a column; None: for
    every environment; ANYWHERE: for at least one). Admins hold everything without grants."""
    in_groups = sa.select(group_members.c.group_id).where(group_members.c.user_id == user_id)
    held = sa.exists().where(Grant.permission == permission,
                             sa.or_(Grant.user_id == user_id, Grant.group_id.in_(in_groups)))
    if environment_id is not ANYWHERE:
        scope = Grant.environment_id.is_(None)
        if environment_id is not None:
            scope = scope | (Grant.environment_id == environment_id)
        held = held.where(scope)
    return held


def has_permission(user: User | None, permission: str, environment: Environment | None = None) -> bool:
    """Whether `user` holds `permission` for `environment` (None: for every environment)."""
    check_name(permission)
    if user is None or not user.is_authenticated or not user.active:
        return False
    if user.is_admin:
        return True
    return bool(db.session.scalar(sa.select(
        grant_held(user.id, permission, environment.id if environment is not None else None))))


def has_permission_somewhere(user: User | None, permission: str) -> bool:
    """Whether `user` holds `permission` for at least one environment (to draw a link)."""
    check_name(permission)
    if user is None or not user.is_authenticated or not user.active:
        return False
    if user.is_admin:
        return True
    return bool(db.session.scalar(sa.select(grant_held(user.id, permission, ANYWHERE))))


def require(user: User | None, permission: str, environment: Environment | None = None) -> None:
    if not has_permission(user, permission, environment):
        raise PermissionDenied(_missing(permission, environment))


def _missing(permission: str, environment: Environment | None) -> str:
    where = f" on {environment.project.name}/{environment.name}" if environment is not None else ""
    return (f"You need the \u201c{PERMISSIONS[permission]}\u201d permission{where} to do this; "
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
    """Template helpers: `can_somewhere('approve_release')` and the permissions' names (the views
    decide the rest, with has_permission)."""
    return {"can_somewhere": lambda permission: has_permission_somewhere(current_user, permission),
            "PERMISSIONS": PERMISSIONS}


# -- who may decide or cancel a release: drawing buttons, the inbox, mail recipients -------------
# releases/decisions.py enforces the same rules when the action is taken (_check_decider, cancel).

def may_decide(release: Release, user: User | None) -> bool:
    """Whether `user` may approve or reject `release` (SPEC §6: never one's own, unless allowed)."""
    return decide_refusal(release, user) is None


def decide_refusal(release: Release, user: User | None) -> str | None:
    """Why `user` may not approve or reject `release`, as a sentence; None when they may."""
    if user is None or not user.is_authenticated:
        return "Sign in to approve or reject releases."
    environment = release.environment
    if not has_permission(user, "approve_release", environment):
        return _missing("approve_release", environment)
    if release.triggered_by_id == user.id and not environment.allow_self_approval:
        return ("You triggered this release, so someone else must approve or reject it "
                "(withdraw it if it should not go ahead).")
    return _author_refusal(release, user)


def _author_refusal(release: Release, user: User) -> str | None:
    environment = release.environment
    if not environment.authors_may_not_approve:
        return None
    return authorship_refusal(release.since, user, f"{environment.project.name}/{environment.name}")


def authorship_refusal(since: dict | None, user: User,
                       where: str = "this environment",  # pragma: no mutate (see the last sentence below)
                       ) -> str | None:
    """Separation of duties over the whole change (authors_may_not_approve): nobody whose email
    is the author's or committer's of a commit since the last release decides it. Someone with
    no email address cannot be told apart, so they do not decide either. `since` is None until
    the worker computes it (running/since.py), which writes every key read here. The default
    `where` reaches only progress_of, which asks whether there is a refusal, not what it says."""
    email = (user.email or "").strip().lower()
    if not email:
        return (f"{where} does not let the authors of a change approve it, and your account has no email "
                "address to tell you apart from them; ask an admin to set it.")
    for commit in since["commits"] if since else []:
        if email in (commit["author_email"].strip().lower(), commit["committer_email"].strip().lower()):
            return (f"You wrote or committed {commit['sha'][:12]} (\u201c{commit['subject']}\u201d), "
                    f"which is part of this release, and {where} does not let the authors of a change approve "
                    "it; someone else must decide.")
    return None


def decidable_releases(user: User):
    """SELECT of the PENDING_APPROVAL releases `user` may decide: the rule of may_decide in SQL."""
    query = (sa.select(Release).join(Release.environment)
             .where(Release.state == "PENDING_APPROVAL"))
    if not user.is_admin:
        query = query.where(grant_held(user.id, "approve_release", Release.environment_id))
    return query.where(Release.triggered_by_id.is_(None) | (Release.triggered_by_id != user.id)
                       | Environment.allow_self_approval)


def _may_approve_in(environment_id: Any) -> sa.ColumnElement[bool]:
    """SQL: the user row is active and may approve in `environment_id` (a value or a column)."""
    return sa.and_(User.active, sa.or_(User.is_admin, grant_held(User.id, "approve_release", environment_id)))


def deciders(release: Release) -> list[User]:
    """Active users who may decide `release`: admins and approve_release holders for its
    environment, not its triggerer unless the environment allows self-approval, nor the authors
    of its change when the environment says so (the rules of decide_refusal)."""
    return [user for user in _candidates(release) if _author_refusal(release, user) is None]


def excluded_authors(release: Release) -> list[User]:
    """Who would decide `release` but wrote or committed part of it (authors_may_not_approve)."""
    if not release.environment.authors_may_not_approve:
        return []
    return [user for user in _candidates(release) if _author_refusal(release, user) is not None]


def _candidates(release: Release) -> list[User]:
    environment = release.environment
    query = sa.select(User).where(_may_approve_in(environment.id)).order_by(User.username)
    if not environment.allow_self_approval and release.triggered_by_id is not None:
        query = query.where(User.id != release.triggered_by_id)
    return list(db.session.scalars(query))


def deciders_by_environment(environment_ids: Collection[int]) -> dict[int, tuple[bool, bool, list[User]]]:
    """deciders() for many environments in two queries, whatever their number (the dashboard,
    the inbox): environment id → (whether it allows self-approval, whether authors may not
    approve, its deciders by username, their groups loaded). Leaving each release's triggerer and
    authors out is the caller's part."""
    if not environment_ids:
        return {}
    rows = db.session.execute(
        sa.select(Environment.id, Environment.allow_self_approval, Environment.authors_may_not_approve, User)
        .select_from(User).join(Environment, sa.true())
        .where(Environment.id.in_(environment_ids), _may_approve_in(Environment.id))
        .order_by(User.username).options(selectinload(User.groups)))
    found: dict[int, tuple[bool, bool, list[User]]] = {}
    for environment_id, self_approval, no_authors, user in rows:
        found.setdefault(environment_id, (self_approval, no_authors, []))[2].append(user)
    return found


def may_cancel(release: Release, user: User | None) -> bool:
    """The triggerer may cancel their own queued or pending release without cancel_release."""
    return user is not None and release.triggered_by_id == user.id
