"""Projects and environments: creating them, a project's repository, branch and hook ref,
environment settings and variables: every change audited, the two switches kept apart,
and the host paths an environment's release command may see checked when set and at each run."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from flask import current_app

from . import approval_rules, releases, windows
from .config import ROOT
from .extensions import db
from .intake.resources import InvalidInput
from .models import Environment, Project, Release, Variable
from .permissions import require
from .running import WORK_ROOT
from .transactions import Actor, audit, begin_or_join_write, commit_changes


class SettingsConflict(releases.ReleaseError):
    """A settings change that cannot be made; `field` says which form field to mark."""

    status = 409

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def create_project(actor: Actor, *, name: str, repo: str, branch: str = "main",
                   hook_ref: str | None = None, web_url_template: str | None = None) -> Project:
    begin_or_join_write()
    require(actor.user, "manage_environments")
    if db.session.scalar(sa.select(Project.id).where(Project.name == name)) is not None:
        raise releases.ReleaseError(f"A project named {name} already exists; choose another name.")
    project = Project(name=name, repo=repo, branch=branch or "main", hook_ref=hook_ref,
                      web_url_template=web_url_template)
    db.session.add(project)
    db.session.flush()
    audit(actor, "project", environment_id=None, reason=f"project {name} created",
                   details={"name": name, "repo": repo, "branch": project.branch, "hook_ref": hook_ref})
    commit_changes()
    return project


PROJECT_EDITABLE = ("repo", "branch", "hook_ref", "web_url_template", "change_windows", "freezes")
# A project's repository, branch and hook ref are audited (old → new) and announced to the
# environments whose gate moves with them: where the hook is read from decides which gate runs
# (SPEC §4), so moving it weakens the gate.
PROJECT_GATE_WEAKENING = {"repo", "branch", "hook_ref"}


def update_project(actor: Actor, project: Project, changes: dict[str, Any]) -> list[str]:
    """Apply checked values (validate.PROJECT_FIELDS) and return the names that changed."""
    begin_or_join_write()
    require(actor.user, "manage_environments")
    unknown = set(changes) - set(PROJECT_EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    changed = {}
    for key, value in changes.items():
        old = getattr(project, key)
        if old != value:
            changed[key] = {"old": old, "new": value}
            setattr(project, key, value)
    if not changed:
        return []
    audit(actor, "project", reason=f"project {project.name} changed",
          details={"project": project.name, "changes": changed,
                   "weakens_gate": sorted((PROJECT_GATE_WEAKENING & changed.keys()) | windows_weakened(changed))})
    _announce_to_environments(actor, project, changed)
    if changed.keys() & {"change_windows", "freezes"}:
        db.session.flush()
        for environment in project.environments:  # a release waiting for a window may start now
            releases.dispatch_queue(environment.id)
    commit_changes()
    return sorted(changed)


def _announce_to_environments(actor: Actor, project: Project, changed: dict[str, dict]) -> None:
    """Within the caller's transaction: a settings event for each environment whose gate the
    change moves, announced like an environment's own (webhook environment.updated, mail to
    admins), so an integration watching one environment hears about it too. Keys read
    `project.<field>`, apart from the environment's own settings of the same name."""
    for environment in project.environments:
        moved = (PROJECT_GATE_WEAKENING & changed.keys()) | windows_weakened(changed)
        if environment.hook_ref:  # its own hook ref wins over the project's
            moved -= {"hook_ref"}
        if environment.change_windows is not None:  # and its own windows over the project's
            moved -= {"change_windows"}
        if not moved:
            continue
        audit(actor, "settings", environment_id=environment.id, reason=f"project {project.name} changed",
              details={"project": project.name,
                       "changes": {f"project.{key}": changed[key] for key in sorted(moved)},
                       "weakens_gate": [f"project.{key}" for key in sorted(moved)]})


def create_environment(project: Project, actor: Actor, *, name: str, **settings: Any) -> Environment:
    begin_or_join_write()
    require(actor.user, "manage_environments")
    if settings.get("approval_workflow", True) and settings.get("parallel_releases", False):
        raise SettingsConflict("The approval workflow and parallel releases exclude each other: "
                               "turn one off to turn the other on.", "parallel_releases")
    if db.session.scalar(sa.select(Environment.id).where(Environment.project_id == project.id,
                                                         Environment.name == name)) is not None:
        raise releases.ReleaseError(f"{project.name} already has an environment named {name}.")
    environment = Environment(project_id=project.id, name=name, **settings)
    db.session.add(environment)
    db.session.flush()
    audit(actor, "settings", environment_id=environment.id, reason=f"environment {name} created",
                   details={"created": {k: v for k, v in settings.items()}})
    commit_changes()
    return environment


# A mode, as the forms offer it, in the two switches the model and the API keep.
MODES = {"approval": {"approval_workflow": True, "parallel_releases": False},
         "serial": {"approval_workflow": False, "parallel_releases": False},
         "parallel": {"approval_workflow": False, "parallel_releases": True}}
MODE_CHOICE = "Choose one mode: approval workflow, serial without approval, or parallel releases."

GATE_WEAKENING = {"release_stream", "release_command", "hook_ref"}


def weakened_settings(changed: dict[str, dict[str, Any]]) -> list[str]:
    """The changed settings that weaken the gate. The approval workflow weakens it only when
    turned off, self-approval only when turned on; host paths only when a path is
    added or turns writable; approval rules only when one is removed, lowered or given to
    other people; separation of duties only when turned off; emergency releases only when
    turned on, their review only when given longer; windows and freezes only when releases may
    start at more moments."""
    weakened = GATE_WEAKENING & changed.keys()
    if "approval_workflow" in changed and not changed["approval_workflow"]["new"]:
        weakened.add("approval_workflow")
    if "allow_self_approval" in changed and changed["allow_self_approval"]["new"]:
        weakened.add("allow_self_approval")
    if "sandbox_paths" in changed and sandbox_paths_widened(changed["sandbox_paths"]["old"],
                                                            changed["sandbox_paths"]["new"]):
        weakened.add("sandbox_paths")
    if "approval_rules" in changed and approval_rules.weakenings(changed["approval_rules"]["old"] or [],
                                                                 changed["approval_rules"]["new"]):
        weakened.add("approval_rules")
    if "authors_may_not_approve" in changed and not changed["authors_may_not_approve"]["new"]:
        weakened.add("authors_may_not_approve")
    if "allow_break_glass" in changed and changed["allow_break_glass"]["new"]:
        weakened.add("allow_break_glass")  # emergency releases skip the hook and the approvals
    if "break_glass_review_hours" in changed and changed["break_glass_review_hours"]["new"] > (
            changed["break_glass_review_hours"]["old"] or 0):
        weakened.add("break_glass_review_hours")
    weakened |= windows_weakened(changed)
    return sorted(weakened)


def windows_weakened(changed: dict[str, dict[str, Any]]) -> set[str]:
    """The windows and freezes among `changed` that let releases start at more moments."""
    weakened = set()
    if "change_windows" in changed and windows.windows_widened(changed["change_windows"]["old"],
                                                               changed["change_windows"]["new"]):
        weakened.add("change_windows")
    if "freezes" in changed and windows.freezes_lifted(changed["freezes"]["old"], changed["freezes"]["new"]):
        weakened.add("freezes")
    return weakened


def sandbox_paths_widened(old: list[dict] | None, new: list[dict] | None) -> bool:
    before = {entry["path"]: entry["writable"] for entry in old or []}
    return any(entry["path"] not in before or (entry["writable"] and not before[entry["path"]])
               for entry in new or [])


def check_settings_changes(environment: Environment, changes: dict[str, Any]) -> None:
    """Raise SettingsConflict when `changes` cannot be made now: both switches on, parallel
    releases while a release runs its hook or waits, or an approval rule's group gone."""
    approval = changes.get("approval_workflow", environment.approval_workflow)
    parallel = changes.get("parallel_releases", environment.parallel_releases)
    if approval and parallel:
        field = "parallel_releases" if "parallel_releases" in changes else "approval_workflow"
        raise SettingsConflict("The approval workflow and parallel releases exclude each other: "
                               "turn one off to turn the other on.", field)
    if parallel and not environment.parallel_releases:
        busy = db.session.scalar(sa.select(sa.func.count(Release.id)).where(
            Release.environment_id == environment.id, Release.state.in_(("READY", "PENDING_APPROVAL"))))
        if busy:
            raise SettingsConflict("Parallel releases cannot be turned on while a release of this environment "
                                   "is running its hook or waiting for approval; decide or cancel it first.",
                                   "parallel_releases")
    if "approval_rules" in changes:
        missing = approval_rules.missing_groups(changes["approval_rules"])
        if missing:
            raise SettingsConflict(f"The group \u201c{missing[0]}\u201d was deleted meanwhile; name another.",
                                   "approval_rules")


def update_environment(environment: Environment, actor: Actor, changes: dict[str, Any]) -> list[str]:
    """Apply settings changes, refusing both switches on; returns the names that changed."""
    begin_or_join_write()
    require(actor.user, "manage_environments", environment)
    check_settings_changes(environment, changes)  # again in this transaction: a group deleted since a check
    changed = {}
    for key, value in changes.items():
        old = getattr(environment, key)
        if old != value:
            changed[key] = {"old": old, "new": value}
            setattr(environment, key, value)
    if not changed:
        return []
    audit(actor, "settings", environment_id=environment.id, reason="settings changed",
                   details={"changes": changed, "weakens_gate": weakened_settings(changed)})
    db.session.flush()
    releases.dispatch_queue(environment.id)
    commit_changes()
    return sorted(changed)


def set_variable(environment: Environment, actor: Actor, name: str, value: str, *, secret: bool,
                 for_hooks: bool) -> tuple[Variable, bool]:
    begin_or_join_write()
    require(actor.user, "manage_environments", environment)
    variable = db.session.scalar(sa.select(Variable).where(Variable.environment_id == environment.id,
                                                           Variable.name == name))
    created = variable is None
    if created:
        variable = Variable(environment_id=environment.id, name=name)
        db.session.add(variable)
    variable.value, variable.secret, variable.for_hooks = value, secret, for_hooks
    audit(actor, "variable", environment_id=environment.id,
                   reason=f"variable {name} {'created' if created else 'changed'}",
                   details={"name": name, "secret": secret, "for_hooks": for_hooks})
    commit_changes()
    return variable, created


def delete_variable(environment: Environment, actor: Actor, name: str) -> None:
    begin_or_join_write()
    require(actor.user, "manage_environments", environment)
    variable = db.session.scalar(sa.select(Variable).where(Variable.environment_id == environment.id,
                                                           Variable.name == name))
    if variable is None:
        raise releases.NotFound(f"Variable {name} is not set on {environment.project.name}/{environment.name}.")
    db.session.delete(variable)
    audit(actor, "variable", environment_id=environment.id, reason=f"variable {name} deleted",
                   details={"name": name})
    commit_changes()


# -- host paths for the release command (sandbox_paths) -------------------------------------------
#
# The release command's sandbox sees the release's checkout and the system's read-only
# directories; an environment may add host paths, but only under what the operator allows
# (SANDBOX_ALLOWED_PATHS) and never where the application keeps its code, data or workspaces.

MAX_SANDBOX_PATHS = 16
SANDBOX_PATH_LIMIT = 4096
# Where the workers check out releases: one release must not see another's.
WORKSPACE_ROOT = str(WORK_ROOT)
_ENTRY = '{"path": "/srv/shop", "writable": false}'


def sandbox_path_entries(value: Any, name: str = "sandbox_paths") -> list[dict[str, Any]]:
    """Check the shape of a sandbox_paths list; return it clean: each entry exactly
    {"path": <absolute, normalised>, "writable": <bool, default false>}, in the order given.

    Raises InvalidInput (a ValueError) with a sentence: 400 for a wrong type, 422 for a
    value that is not acceptable.
    """
    if not isinstance(value, list):
        raise InvalidInput(f"{name} must be a list of objects like {_ENTRY}.", 400)
    if len(value) > MAX_SANDBOX_PATHS:
        raise InvalidInput(f"{name} holds {len(value)} paths, at most {MAX_SANDBOX_PATHS} are allowed; "
                           f"give the command a common parent directory instead.")
    entries: list[dict[str, Any]] = []
    for number, entry in enumerate(value, 1):
        if not isinstance(entry, dict):
            raise InvalidInput(f"{name}: entry {number} must be an object like {_ENTRY}.", 400)
        unknown = sorted(set(entry) - {"path", "writable"})
        if unknown:
            raise InvalidInput(f"{name}: entry {number} has the unknown key{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(map(repr, unknown))[:200]}; an entry holds only path and writable.", 400)
        if "path" not in entry:
            raise InvalidInput(f"{name}: entry {number} has no path; give each entry an absolute path.", 400)
        path, writable = entry["path"], entry.get("writable", False)
        if not isinstance(path, str):
            raise InvalidInput(f"{name}: the path of entry {number} must be a string.", 400)
        if not isinstance(writable, bool):
            raise InvalidInput(f"{name}: writable of {path[:200]!r} must be true or false.", 400)
        path = _clean_path(path, name)
        if any(earlier["path"] == path for earlier in entries):
            raise InvalidInput(f"{name} lists {path} twice; keep one entry (writable if the command writes there).")
        entries.append({"path": path, "writable": writable})
    return entries


def _clean_path(path: str, name: str) -> str:
    shown = repr(path[:200])
    if not path or len(path) > SANDBOX_PATH_LIMIT or "\x00" in path:
        raise InvalidInput(f"{name}: {shown} must be a path of 1 to {SANDBOX_PATH_LIMIT} characters "
                           "without NUL bytes.")
    if not path.isprintable():  # control characters, lone surrogates, direction overrides
        raise InvalidInput(f"{name}: {shown} holds control or invalid characters; write a plain path.")
    if not path.startswith("/"):
        raise InvalidInput(f"{name}: {shown} is not an absolute path; write it from the root, e.g. /srv/shop.")
    if ".." in path.split("/"):
        raise InvalidInput(f"{name}: {shown} contains '..'; write the path without it.")
    clean = "/" + os.path.normpath(path).lstrip("/")
    if clean == "/":
        raise InvalidInput(f"{name} cannot give the command / itself; name the directories it needs.")
    return clean


def _within(path: str, root: str) -> bool:
    """Component by component: /srv/shop/www is within /srv/shop, /srv/shopping is not."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _sqlite_directory(database_uri: str | None) -> str | None:
    """The directory of a SQLite database file (its -wal and -shm files live beside it)."""
    try:
        url = sa.make_url(database_uri or "")
    except sa.exc.ArgumentError:
        return None
    database = (url.database or "").removeprefix("file:").split("?")[0]
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return os.path.dirname(os.path.abspath(database))


def protected_locations(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What no release command may see, whatever SANDBOX_ALLOWED_PATHS allows:
    (resolved path, what it is)."""
    places = [(str(ROOT), "the application's own directory"),
              (config.get("INSTANCE_DIR"), "the instance directory (INSTANCE_DIR)"),
              (config.get("REPO_CACHE_DIR"), "the repository cache (REPO_CACHE_DIR)"),
              (_sqlite_directory(config.get("SQLALCHEMY_DATABASE_URI")), "the database's directory"),
              (WORKSPACE_ROOT, "the workers' workspaces")]
    return [(os.path.realpath(place), what) for place, what in places if place]


def _check_host_path(path: str, allowed: tuple[str, ...], protected: list[tuple[str, str]], name: str) -> str:
    """The path with its symlinks resolved on this host, if a release command may see it."""
    resolved = os.path.realpath(path)
    shown = path if resolved == path else f"{path} (a symlink to {resolved})"
    roots = [os.path.realpath(root) for root in allowed if os.path.isabs(root)]
    if not roots:
        raise InvalidInput(f"{name}: {shown} cannot be given to the release command because this installation "
                           "allows no host paths (SANDBOX_ALLOWED_PATHS is empty); ask the operator to allow it.")
    if not any(_within(resolved, root) for root in roots):
        raise InvalidInput(f"{name}: {shown} is not under SANDBOX_ALLOWED_PATHS ({', '.join(allowed)}); "
                           "ask the operator to allow it, or choose a path under one of those.")
    for place, what in protected:
        if resolved == place:
            relation, advice = "is", "choose another path"
        elif _within(resolved, place):
            relation, advice = "is inside", "choose a path outside it"
        elif _within(place, resolved):
            relation, advice = "contains", "choose a directory that does not hold it"
        else:
            continue
        raise InvalidInput(f"{name}: {shown} {relation} {what} ({place}), which no release command may see; "
                           f"{advice}.")
    return resolved


def check_sandbox_paths(value: Any, allowed: Iterable[str], protected: list[tuple[str, str]], *,
                        name: str = "sandbox_paths") -> list[dict[str, Any]]:
    """The clean list (see sandbox_path_entries) if every path may be given to the release
    command under `allowed` and outside `protected`; else InvalidInput with a sentence.
    Paths are stored as written: each run resolves them again (release_command_binds)."""
    entries = sandbox_path_entries(value, name)
    allowed = tuple(allowed)
    for entry in entries:
        _check_host_path(entry["path"], allowed, protected, name)
    return entries


def release_command_binds(sandbox_paths: Any, allowed: Iterable[str],
                          config: Mapping[str, Any] | None = None) -> list[tuple[str, bool]]:
    """The host paths to bind into a release command's sandbox, judged again now.

    `sandbox_paths` is the environment's stored list, `allowed` the SANDBOX_ALLOWED_PATHS in
    force now, `config` the app's config (default: current_app.config) for the locations no
    command may see. Returns (path, writable) pairs with each path's symlinks resolved on this
    host and sorted, so a parent comes before a path inside it: bind each at that same path,
    read-write when writable, read-only otherwise. The first entry that may not be bound,
    or that does not exist here, raises ValueError (InvalidInput) with a sentence; the caller
    then fails the release rather than run it with fewer or other paths.
    """
    protected = protected_locations(current_app.config if config is None else config)
    allowed = tuple(allowed)
    binds = []
    for entry in sandbox_path_entries(sandbox_paths):
        resolved = _check_host_path(entry["path"], allowed, protected, "sandbox_paths")
        if not os.path.exists(resolved):
            raise InvalidInput(f"sandbox_paths: {entry['path']} does not exist on this worker; create it, or "
                               "remove it from the environment's settings.")
        binds.append((resolved, entry["writable"]))
    return sorted(binds)
