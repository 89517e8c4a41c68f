"""People: users, their grants and their API tokens. Every change is audited in its own
write transaction and callable without a request (pages, CLI, tests)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .auth import create_token, hash_password
from .extensions import db
from .models import (
    ApiToken,
    EmailLink,
    Environment,
    Grant,
    Project,
    Release,
    SlackLink,
    SlackLinkCode,
    User,
    group_members,
    utcnow,
)
from .permissions import GLOBAL_ONLY, PERMISSIONS, PermissionDenied, grant_held, require
from .releases import NotFound, ReleaseError
from .transactions import Actor, audit, begin_or_join_write, commit_changes, revoke_email_links

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_TOKEN_DAYS = 3650
DEFAULT_TOKEN_DAYS = 90  # a new API token expires unless someone chooses "never"
TOKEN_LIFETIMES = (7, 30, 90, 180, 365)  # the days the tokens page offers, beside "never"
NEVER = "never"


class FieldError(ReleaseError):
    """Input a person can fix; `field` names the form field the sentence belongs beside."""

    def __init__(self, message: str, field: str, status: int = 422):
        super().__init__(message)
        self.field = field
        self.status = status


# -- checks ------------------------------------------------------------------------------------

def check_username(username: str) -> str:
    username = username.strip()
    if not USERNAME.fullmatch(username):
        raise FieldError("Use 1–64 lowercase letters, digits, \u201c.\u201d, \u201c-\u201d or \u201c_\u201d, "
                         "starting with a letter or digit.", "username")
    return username


def check_email(email: str) -> str:
    email = email.strip()
    if len(email) > 255 or not EMAIL.fullmatch(email):
        raise FieldError("Enter an email address like name@example.com; approval requests are sent there.",
                         "email")
    return email


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise FieldError(f"Use at least {MIN_PASSWORD} characters; a short phrase is easy to remember.",
                         "password")
    if len(password) > MAX_PASSWORD:
        raise FieldError(f"Use at most {MAX_PASSWORD} characters.", "password")
    return password


# -- users -------------------------------------------------------------------------------------

def create_user(actor: Actor, *, username: str, email: str, password: str, is_admin: bool = False) -> User:
    begin_or_join_write()
    require(actor.user, "manage_users")
    username, email, password = check_username(username), check_email(email), check_password(password)
    if db.session.scalar(sa.select(User.id).where(User.username == username)) is not None:
        raise FieldError(f"A user named {username} already exists; choose another name.", "username", 409)
    user = User(username=username, email=email, password_hash=hash_password(password), is_admin=is_admin)
    db.session.add(user)
    db.session.flush()
    audit(actor, "user", reason=f"user {username} created{' as admin' if is_admin else ''}",
          details={"user": username, "email": email, "admin": is_admin})
    try:
        commit_changes()
    except IntegrityError:  # created by someone else between the check and the insert
        raise FieldError(f"A user named {username} already exists; choose another name.", "username",
                         409) from None
    return user


# The machine's own door (CLI, demo, test set-up): whoever runs `flask` on the server may do
# this already, so no permission is checked.

def machine_actor() -> Actor:
    """The CLI and `flask demo` act with the machine's authority, as the first admin (or nobody)."""
    admin = db.session.scalar(sa.select(User).where(User.is_admin, User.active).order_by(User.id))
    return Actor(admin or _MachineAdmin(), "cli")


class _MachineAdmin:
    """Stands in for an admin before any user exists (first `projects create`)."""

    id = None
    username = "cli"
    is_admin = True
    active = True
    is_authenticated = True


def add_user(name: str, email: str, password: str, admin: bool = False) -> User:
    user = User(username=name, email=email, password_hash=hash_password(password), is_admin=admin)
    db.session.add(user)
    db.session.commit()
    return user


def add_grant(user: User, permission: str, environment: Environment | None = None) -> Grant:
    existing = db.session.scalar(sa.select(Grant).where(
        Grant.user_id == user.id, Grant.permission == permission,
        Grant.environment_id == environment.id if environment else Grant.environment_id.is_(None)))
    if existing is None:
        existing = Grant(user_id=user.id, permission=permission,
                         environment_id=environment.id if environment else None)
        db.session.add(existing)
        audit(Actor(None, "cli"), "grant", environment_id=environment.id if environment else None,
              reason=f"{permission} granted to {user.username}")
        db.session.commit()
    return existing


def deactivate_user(actor: Actor, user: User) -> int:
    """Deactivate `user`: sessions end (the user loader refuses inactive users), and every
    API token, unused email link and Slack link is revoked in the same transaction, so they stay
    dead if the account is reactivated. Returns how many tokens were revoked."""
    begin_or_join_write()
    require(actor.user, "manage_users")
    if actor.user is not None and actor.user.id == user.id:
        raise PermissionDenied("You cannot deactivate your own account; ask another user manager to do it.")
    if not user.active:
        raise ReleaseError(f"{user.username} is already deactivated.")
    user.active = False
    user.end_sessions()
    revoked = db.session.execute(
        sa.update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())).rowcount
    links = revoke_email_links(EmailLink.user_id == user.id, "the person it was sent to was deactivated")
    # Slack users linked to the account (and codes not used yet) go too: whoever held the account
    # may have linked one, and a reactivation must not bring it back.
    slack = db.session.execute(sa.delete(SlackLink).where(SlackLink.user_id == user.id)).rowcount
    db.session.execute(sa.delete(SlackLinkCode).where(SlackLinkCode.user_id == user.id,
                                                      SlackLinkCode.used_at.is_(None)))
    audit(actor, "user", reason=f"user {user.username} deactivated; {revoked} API token(s), {links} email "
          f"link(s) and {slack} Slack link(s) revoked",
          details={"user": user.username, "active": {"old": True, "new": False}, "tokens_revoked": revoked,
                   "links_revoked": links, "slack_links_removed": slack})
    commit_changes()
    return revoked


def reactivate_user(actor: Actor, user: User) -> None:
    """Let `user` sign in again. Tokens and email links revoked on deactivation stay revoked."""
    begin_or_join_write()
    require(actor.user, "manage_users")
    if user.active:
        raise ReleaseError(f"{user.username} is already active.")
    user.active = True
    audit(actor, "user", reason=f"user {user.username} reactivated",
          details={"user": user.username, "active": {"old": False, "new": True}})
    commit_changes()


def reset_password(actor: Actor, user: User, password: str) -> None:
    begin_or_join_write()
    require(actor.user, "manage_users")
    user.password_hash = hash_password(check_password(password))
    user.end_sessions()
    audit(actor, "user", reason=f"password of {user.username} reset", details={"user": user.username})
    commit_changes()


def sign_out(user: User) -> None:
    """End `user`'s sessions: the session and remember-me cookies name the login id, which
    changes, so a copy of a cookie taken before signing out no longer works. One id per user,
    so this signs the user out in every browser."""
    begin_or_join_write()
    user.end_sessions()
    commit_changes()


def users() -> list[User]:
    return list(db.session.scalars(sa.select(User).order_by(User.username)))


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("There is no such user; it may have been removed.")
    return user


# -- grants ------------------------------------------------------------------------------------

def scope_label(environment: Environment | None) -> str:
    return "all environments" if environment is None else f"{environment.project.name}/{environment.name}"


def grant_label(grant: Grant) -> str:
    return f"{PERMISSIONS.get(grant.permission, grant.permission)} ({scope_label(grant.environment)})"


def check_grant(permission: str, environment: Environment | None) -> None:
    """A grant of `permission` for `environment` (None: all) that may exist, or FieldError."""
    if permission not in PERMISSIONS:
        raise FieldError(f"Choose one of: {', '.join(PERMISSIONS.values())}.", "permission")
    if permission in GLOBAL_ONLY and environment is not None:
        raise FieldError(f"\u201c{PERMISSIONS[permission]}\u201d exists only for all environments, since it can "
                         "grant anything; choose \u201cAll environments\u201d.", "environment")


def grant_permission(actor: Actor, user: User, permission: str, environment: Environment | None = None) -> Grant:
    """Give `user` one permission for every environment (None) or for one."""
    begin_or_join_write()
    require(actor.user, "manage_users")
    check_grant(permission, environment)
    scope = (Grant.environment_id.is_(None) if environment is None
             else Grant.environment_id == environment.id)
    exists = db.session.scalar(sa.select(Grant.id).where(Grant.user_id == user.id,
                                                         Grant.permission == permission, scope))
    if exists is not None:
        raise FieldError(f"{user.username} already holds \u201c{PERMISSIONS[permission]}\u201d on "
                         f"{scope_label(environment)}.", "permission", 409)
    grant = Grant(user_id=user.id, permission=permission,
                  environment_id=environment.id if environment is not None else None)
    db.session.add(grant)
    db.session.flush()
    audit(actor, "grant", environment_id=grant.environment_id,
          reason=f"{permission} granted to {user.username} on {scope_label(environment)}",
          details={"user": user.username, "permission": permission, "scope": scope_label(environment)})
    commit_changes()
    return grant


def revoke_grant(actor: Actor, user: User, grant_id: int) -> None:
    begin_or_join_write()
    require(actor.user, "manage_users")
    grant = db.session.scalar(sa.select(Grant).where(Grant.id == grant_id, Grant.user_id == user.id))
    if grant is None:
        raise NotFound(f"{user.username} holds no such grant; it may have been revoked already.")
    label, permission, environment_id = scope_label(grant.environment), grant.permission, grant.environment_id
    db.session.delete(grant)
    links = 0
    if permission == "approve_release" and not user.is_admin:
        db.session.flush()
        links = end_links_no_longer_allowed(user)
    audit(actor, "grant", environment_id=environment_id,
          reason=f"{permission} revoked from {user.username} on {label}",
          details={"user": user.username, "permission": permission, "scope": label, "revoked": True,
                   "links_revoked": links})
    commit_changes()


def end_links_no_longer_allowed(user: User) -> int:
    """Within the caller's transaction: end `user`'s unused links to releases they may no
    longer decide. The link page would refuse them today, but a later grant would bring
    them back to life; like a deactivation, losing the right ends them for good."""
    still_allowed = grant_held(user.id, "approve_release", Release.environment_id)
    no_longer = sa.select(Release.id).where(~still_allowed)
    return revoke_email_links((EmailLink.user_id == user.id) & EmailLink.release_id.in_(no_longer),
                              "the person it was sent to lost the permission to decide it")


def grants_of(user: User) -> list[Grant]:
    return sorted(user.grants, key=lambda g: (list(PERMISSIONS).index(g.permission)
                                              if g.permission in PERMISSIONS else 99, scope_label(g.environment)))


def all_environments() -> list[Environment]:
    return list(db.session.scalars(sa.select(Environment).join(Project)
                                   .order_by(Project.name, Environment.name)))


def managed_environments(user: User) -> list[Environment]:
    """Environments `user` manages through a grant scoped to them (for the admin index)."""
    in_groups = sa.select(group_members.c.group_id).where(group_members.c.user_id == user.id)
    scoped = sa.select(Grant.environment_id).where(
        Grant.permission == "manage_environments", sa.or_(Grant.user_id == user.id, Grant.group_id.in_(in_groups)))
    return list(db.session.scalars(
        sa.select(Environment).join(Project).where(Environment.id.in_(scoped))
        .order_by(Project.name, Environment.name)))


# -- API tokens: each user manages their own ---------------------------------------------------

def _own(actor: Actor) -> User:
    if actor.user is None or not getattr(actor.user, "active", False) or actor.user.id is None:
        raise PermissionDenied("Sign in as an active user to manage API tokens.")
    return actor.user


def check_token_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise FieldError("Give the token a name of 1–100 characters that says where it is used.", "name")
    return name


def check_expiry_days(days: str | int | None) -> int | None:
    """A new token's lifetime in days; None for an explicit `never`. Nothing chosen is the default."""
    if days is None or (isinstance(days, str) and not days.strip()):
        return DEFAULT_TOKEN_DAYS
    if isinstance(days, str) and days.strip().lower() == NEVER:
        return None
    try:
        value = int(days)
    except (TypeError, ValueError):
        raise FieldError(f"Enter a whole number of days, or {NEVER} for a token that does not expire.",
                         "expires_in_days") from None
    if not 1 <= value <= MAX_TOKEN_DAYS:
        raise FieldError(f"Enter between 1 and {MAX_TOKEN_DAYS} days, or {NEVER}.", "expires_in_days")
    return value


def create_api_token(actor: Actor, name: str, expires_in_days: int | None = DEFAULT_TOKEN_DAYS) -> str:
    """Create a token for the acting user and return it; only its hash is stored. It expires
    after `expires_in_days`, or never for None."""
    begin_or_join_write()
    user = _own(actor)
    name = check_token_name(name)
    expires_at: datetime | None = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    audit(actor, "token", reason=f"API token {name!r} created for {user.username}",
          details={"user": user.username, "name": name,
                   "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if expires_at else None})
    return create_token(user, name, expires_at)  # commits the token and the audit row together


def revoke_api_token(actor: Actor, token_id: int) -> ApiToken:
    """Revoke one of the acting user's own tokens; another user's token reads as missing."""
    begin_or_join_write()
    user = _own(actor)
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user.id))
    if token is None:
        raise NotFound("You have no such API token.")
    if token.revoked_at is not None:
        raise ReleaseError(f"The token {token.name!r} is already revoked.")
    token.revoked_at = utcnow()
    audit(actor, "token", reason=f"API token {token.name!r} ({token.prefix}…) revoked by {user.username}",
          details={"user": user.username, "name": token.name, "prefix": token.prefix})
    commit_changes()
    return token


def tokens_of(user: User) -> list[ApiToken]:
    return list(db.session.scalars(sa.select(ApiToken).where(ApiToken.user_id == user.id)
                                   .order_by(ApiToken.id.desc())))


def active_token_count(user: User) -> int:
    now = utcnow()
    return db.session.scalar(sa.select(sa.func.count(ApiToken.id)).where(
        ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None),
        sa.or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))) or 0
