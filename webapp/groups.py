"""Groups: named sets of users that approval rules name and grants may go to. Like accounts.py,
every change is audited in its own write transaction and callable without a request.

A rule must never point at nothing: a group that an environment's approval rules (or a pending
release's) name cannot be deleted, and renaming one rewrites those rules in the same transaction.
Losing a right ends email links at once, as revoking a user's own grant does.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .accounts import FieldError, check_grant, end_links_no_longer_allowed, scope_label
from .approval_rules import NAME
from .extensions import db
from .models import Environment, Grant, Group, Release, User, group_members
from .permissions import PERMISSIONS, require
from .releases import NotFound, WrongState
from .transactions import Actor, audit, begin_or_join_write, commit_changes

MAX_DESCRIPTION = 1000


# -- checks ------------------------------------------------------------------------------------

def check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not NAME.fullmatch(name):
        raise FieldError("Use 1–63 lowercase letters, digits, \u201c-\u201d or \u201c_\u201d, starting with a "
                         "letter or digit, like dba or release-managers.", "name")
    return name


def check_description(description: str) -> str:
    description = description.strip()
    if len(description) > MAX_DESCRIPTION:
        raise FieldError(f"Use at most {MAX_DESCRIPTION} characters; say in a sentence who belongs here.",
                         "description")
    return description


def _taken(name: str) -> FieldError:
    return FieldError(f"A group named {name} already exists; choose another name.", "name", 409)


# -- reading -----------------------------------------------------------------------------------

def groups() -> list[Group]:
    return list(db.session.scalars(sa.select(Group).order_by(Group.name)))


def get_group(name: str) -> Group:
    group = db.session.scalar(sa.select(Group).where(Group.name == name))
    if group is None:
        raise NotFound(f"There is no group named {name[:80]}; the groups are listed under Admin \u2192 Groups.")
    return group


def grants_of(group: Group) -> list[Grant]:
    found = db.session.scalars(sa.select(Grant).where(Grant.group_id == group.id))
    return sorted(found, key=_grant_order)


def grants_through_groups(user: User) -> list[Grant]:
    """The grants `user` holds as a member of a group (each names its group)."""
    in_groups = sa.select(group_members.c.group_id).where(group_members.c.user_id == user.id)
    found = db.session.scalars(sa.select(Grant).where(Grant.group_id.in_(in_groups)))
    return sorted(found, key=lambda grant: (grant.group.name, *_grant_order(grant)))


def _grant_order(grant: Grant) -> tuple:
    return (list(PERMISSIONS).index(grant.permission) if grant.permission in PERMISSIONS else 99,
            scope_label(grant.environment))


def environments_naming(name: str) -> list[Environment]:
    """Environments whose approval rules name the group `name`."""
    maybe = sa.select(Environment).where(
        sa.cast(Environment.approval_rules, sa.Text).contains(f'"{name}"', autoescape=True))
    return [environment for environment in db.session.scalars(maybe.order_by(Environment.id))
            if _names(environment.approval_rules, name)]


def pending_releases_naming(name: str) -> list[Release]:
    """Releases waiting for approval whose rules (fixed when they began waiting) name the group."""
    pending = db.session.scalars(sa.select(Release).where(Release.state == "PENDING_APPROVAL").order_by(Release.id))
    return [release for release in pending if _names(release.approval_rules, name)]


def _names(rules: list | None, name: str) -> bool:
    return any(isinstance(rule, dict) and rule.get("group") == name for rule in rules or [])


def _renamed(rules: list, old: str, new: str) -> list:
    return [{**rule, "group": new} if isinstance(rule, dict) and rule.get("group") == old else rule
            for rule in rules]


def _lock(group: Group) -> None:
    """Hold the group's row until commit (PostgreSQL), then read what naming it is committed:
    rules that name it wait for this, and see it gone or renamed (approval_rules.missing_groups)."""
    db.session.execute(sa.select(Group.id).where(Group.id == group.id).with_for_update())


# -- groups ------------------------------------------------------------------------------------

def create_group(actor: Actor, *, name: str, description: str = "") -> Group:
    begin_or_join_write()
    require(actor.user, "manage_users")
    name, description = check_name(name), check_description(description)
    if db.session.scalar(sa.select(Group.id).where(Group.name == name)) is not None:
        raise _taken(name)
    group = Group(name=name, description=description)
    db.session.add(group)
    db.session.flush()
    audit(actor, "group", reason=f"group {name} created", details={"group": name, "description": description})
    try:
        commit_changes()
    except IntegrityError:  # created by someone else between the check and the insert
        raise _taken(name) from None
    return group


def update_group(actor: Actor, group: Group, *, name: str | None = None,
                 description: str | None = None) -> list[str]:
    """Rename `group` and/or change its description; returns what changed. A rename rewrites
    every environment's and every pending release's approval rules that name the group."""
    begin_or_join_write()
    require(actor.user, "manage_users")
    name = check_name(name) if name is not None else group.name
    description = check_description(description) if description is not None else group.description
    old = group.name
    changed = {key: {"old": getattr(group, key), "new": value}
               for key, value in (("name", name), ("description", description)) if getattr(group, key) != value}
    if not changed:
        return []
    rewritten: list[str] = []
    if "name" in changed:
        if db.session.scalar(sa.select(Group.id).where(Group.name == name)) is not None:
            raise _taken(name)
        _lock(group)
        rewritten = _rewrite_rules(actor, old, name)
    group.name, group.description = name, description
    reason = f"group {old} renamed to {name}" if "name" in changed else f"description of group {old} changed"
    audit(actor, "group", reason=reason + (f"; approval rules of {', '.join(rewritten)} now name {name}"
                                           if rewritten else ""),
          details={"group": name, "changes": changed, "rules_rewritten": rewritten})
    try:
        commit_changes()
    except IntegrityError:  # the new name was taken by someone else in the meantime
        raise _taken(name) from None
    return sorted(changed)


def _rewrite_rules(actor: Actor, old: str, new: str) -> list[str]:
    """Within the caller's transaction: rules naming group `old` name `new`; returns where."""
    where = []
    for environment in environments_naming(old):
        before = environment.approval_rules
        environment.approval_rules = _renamed(before, old, new)
        label = f"{environment.project.name}/{environment.name}"
        where.append(label)
        # Not a "changes" entry: nobody changed the rules, and they ask for the same people as before.
        audit(actor, "settings", environment_id=environment.id,
              reason=f"group {old} renamed to {new}: the approval rules follow it",
              details={"group": {"old": old, "new": new},
                       "approval_rules": {"old": before, "new": environment.approval_rules}})
    for release in pending_releases_naming(old):
        release.approval_rules = _renamed(release.approval_rules, old, new)
        where.append(f"release #{release.id}")
    return where


def delete_group(actor: Actor, group: Group) -> None:
    """Delete `group`, its memberships and its grants; refused while approval rules name it."""
    begin_or_join_write()
    require(actor.user, "manage_users")
    _lock(group)
    naming = [f"{environment.project.name}/{environment.name}" for environment in environments_naming(group.name)]
    naming += [f"release #{release.id} (pending approval)" for release in pending_releases_naming(group.name)]
    if naming:
        db.session.rollback()  # and with it the lock
        raise WrongState(f"The approval rules of {', '.join(naming)} name the group {group.name}, so it cannot be "
                         "deleted; change those rules first, or decide the pending release.")
    name, members = group.name, list(group.members)
    grants = grants_of(group)
    db.session.execute(sa.delete(Grant).where(Grant.group_id == group.id))
    db.session.delete(group)
    db.session.flush()
    links = _end_links(members) if any(g.permission == "approve_release" for g in grants) else 0
    audit(actor, "group", reason=f"group {name} deleted with {len(members)} membership(s) and {len(grants)} "
          f"grant(s); {links} email link(s) revoked",
          details={"group": name, "deleted": True, "members": [user.username for user in members],
                   "grants": [_grant_details(grant) for grant in grants], "links_revoked": links})
    commit_changes()


def _end_links(users: list[User]) -> int:
    """Within the caller's transaction (flushed): end the unused email links each of `users` may
    no longer use (admins decide whatever the grants say)."""
    return sum(end_links_no_longer_allowed(user) for user in users if not user.is_admin)


def _grant_details(grant: Grant) -> dict:
    return {"permission": grant.permission, "scope": scope_label(grant.environment)}


# -- members -----------------------------------------------------------------------------------

def add_member(actor: Actor, group: Group, user: User) -> bool:
    """Put `user` in `group`; False when they were in it already (nothing changes)."""
    begin_or_join_write()
    require(actor.user, "manage_users")
    if user in group.members:
        return False
    group.members.append(user)
    audit(actor, "group", reason=f"{user.username} added to group {group.name}",
          details={"group": group.name, "user": user.username, "member": True})
    try:
        commit_changes()
    except IntegrityError:  # added by someone else in the meantime, or the group was deleted
        raise WrongState(f"{user.username} could not be added to {group.name}: the group changed meanwhile; "
                         "reload and try again.") from None
    return True


def remove_member(actor: Actor, group: Group, user: User) -> None:
    """Take `user` out of `group`; the group's grants stop being theirs at once."""
    begin_or_join_write()
    require(actor.user, "manage_users")
    if user not in group.members:
        raise NotFound(f"{user.username} is not a member of {group.name}; nothing was changed.")
    group.members.remove(user)
    db.session.flush()
    approves = db.session.scalar(sa.select(Grant.id).where(Grant.group_id == group.id,
                                                           Grant.permission == "approve_release").limit(1))
    links = _end_links([user]) if approves is not None else 0
    audit(actor, "group", reason=f"{user.username} removed from group {group.name}"
          + (f"; {links} email link(s) revoked" if links else ""),
          details={"group": group.name, "user": user.username, "member": False, "links_revoked": links})
    commit_changes()


# -- grants to a group -------------------------------------------------------------------------

def grant_to_group(actor: Actor, group: Group, permission: str, environment: Environment | None = None) -> Grant:
    """Give `group` one permission for every environment (None) or one: every member holds it."""
    begin_or_join_write()
    require(actor.user, "manage_users")
    check_grant(permission, environment)
    label = scope_label(environment)
    already = FieldError(f"The group {group.name} already holds \u201c{PERMISSIONS[permission]}\u201d on {label}.",
                         "permission", 409)
    scope = Grant.environment_id.is_(None) if environment is None else Grant.environment_id == environment.id
    if db.session.scalar(sa.select(Grant.id).where(Grant.group_id == group.id, Grant.permission == permission,
                                                   scope)) is not None:
        raise already
    grant = Grant(group_id=group.id, permission=permission,
                  environment_id=environment.id if environment is not None else None)
    db.session.add(grant)
    db.session.flush()
    audit(actor, "grant", environment_id=grant.environment_id,
          reason=f"{permission} granted to group {group.name} on {label}",
          details={"group": group.name, "permission": permission, "scope": label})
    try:
        commit_changes()
    except IntegrityError:  # granted by someone else in the meantime
        raise already from None
    return grant


def revoke_group_grant(actor: Actor, group: Group, grant_id: int) -> None:
    """Revoke one of `group`'s grants; members who lose approve_release lose their email links."""
    begin_or_join_write()
    require(actor.user, "manage_users")
    grant = db.session.scalar(sa.select(Grant).where(Grant.id == grant_id, Grant.group_id == group.id))
    if grant is None:
        raise NotFound(f"The group {group.name} holds no such grant; it may have been revoked already.")
    details = _grant_details(grant)
    environment_id = grant.environment_id
    db.session.delete(grant)
    db.session.flush()
    links = _end_links(list(group.members)) if details["permission"] == "approve_release" else 0
    audit(actor, "grant", environment_id=environment_id,
          reason=f"{details['permission']} revoked from group {group.name} on {details['scope']}",
          details={"group": group.name, **details, "revoked": True, "links_revoked": links})
    commit_changes()


def find_grant(group: Group, permission: str, environment: Environment | None) -> Grant:
    """The grant of `permission` for `environment` that `group` holds (the CLI names grants so)."""
    scope = Grant.environment_id.is_(None) if environment is None else Grant.environment_id == environment.id
    grant = db.session.scalar(sa.select(Grant).where(Grant.group_id == group.id, Grant.permission == permission,
                                                     scope))
    if grant is None:
        raise NotFound(f"The group {group.name} does not hold {permission} on {scope_label(environment)}.")
    return grant
