"""Environment settings and variables: every change audited, the two switches kept apart."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from . import releases
from .extensions import db
from .models import Environment, Project, Release, Variable
from .permissions import require
from .transactions import Actor, audit, commit_changes, transition


class SettingsConflict(releases.ReleaseError):
    """A settings change that cannot be made; `field` says which form field to mark."""

    status = 409

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@transition
def create_project(actor: Actor, *, name: str, repo: str, branch: str = "main",
                   hook_ref: str | None = None) -> Project:
    require(actor.user, "manage_environments")
    if db.session.scalar(sa.select(Project.id).where(Project.name == name)) is not None:
        raise releases.ReleaseError(f"A project named {name} already exists; choose another name.")
    project = Project(name=name, repo=repo, branch=branch or "main", hook_ref=hook_ref)
    db.session.add(project)
    db.session.flush()
    audit(actor, "project", environment_id=None, reason=f"project {name} created",
                   details={"name": name, "repo": repo, "branch": project.branch, "hook_ref": hook_ref})
    commit_changes()
    return project


@transition
def create_environment(project: Project, actor: Actor, *, name: str, **settings: Any) -> Environment:
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


GATE_WEAKENING = {"approval_workflow", "release_stream", "allow_self_approval", "release_command", "hook_ref"}


@transition
def update_environment(environment: Environment, actor: Actor, changes: dict[str, Any]) -> list[str]:
    """Apply settings changes, refusing both switches on; returns the names that changed."""
    require(actor.user, "manage_environments", environment)
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
    changed = {}
    for key, value in changes.items():
        old = getattr(environment, key)
        if old != value:
            changed[key] = {"old": old, "new": value}
            setattr(environment, key, value)
    if not changed:
        return []
    audit(actor, "settings", environment_id=environment.id, reason="settings changed",
                   details={"changes": changed, "weakens_gate": sorted(GATE_WEAKENING & changed.keys())})
    db.session.flush()
    releases.dispatch_queue(environment.id)
    commit_changes()
    return sorted(changed)


@transition
def set_variable(environment: Environment, actor: Actor, name: str, value: str, *, secret: bool,
                 for_hooks: bool) -> tuple[Variable, bool]:
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


@transition
def delete_variable(environment: Environment, actor: Actor, name: str) -> None:
    require(actor.user, "manage_environments", environment)
    variable = db.session.scalar(sa.select(Variable).where(Variable.environment_id == environment.id,
                                                           Variable.name == name))
    if variable is None:
        raise releases.NotFound(f"Variable {name} is not set on {environment.project.name}/{environment.name}.")
    db.session.delete(variable)
    audit(actor, "variable", environment_id=environment.id, reason=f"variable {name} deleted",
                   details={"name": name})
    commit_changes()
