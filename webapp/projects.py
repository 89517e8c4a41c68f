"""Changing a project's repository, branch and hook ref, audited (old → new), and
announced to the environments whose gate moves with it.

Creating projects and environments lives in environments.py; this module only edits.
"""
from __future__ import annotations

from typing import Any

from .models import Project
from .permissions import require
from .transactions import Actor, audit, commit_changes, transition

EDITABLE = ("repo", "branch", "hook_ref")
# Where the hook is read from decides which gate runs (SPEC §4): moving it weakens the gate.
GATE_WEAKENING = {"repo", "branch", "hook_ref"}


@transition
def update_project(actor: Actor, project: Project, changes: dict[str, Any]) -> list[str]:
    """Apply checked values (validate.PROJECT_FIELDS) and return the names that changed."""
    require(actor.user, "manage_environments")
    unknown = set(changes) - set(EDITABLE)
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
                   "weakens_gate": sorted(GATE_WEAKENING & changed.keys())})
    _announce_to_environments(actor, project, changed)
    commit_changes()
    return sorted(changed)


def _announce_to_environments(actor: Actor, project: Project, changed: dict[str, dict]) -> None:
    """Within the caller's transaction: a settings event for each environment whose gate the
    change moves, announced like an environment's own (webhook environment.updated, mail to
    admins), so an integration watching one environment hears about it too. Keys read
    `project.<field>`, apart from the environment's own settings of the same name."""
    for environment in project.environments:
        moved = GATE_WEAKENING & changed.keys()
        if environment.hook_ref:  # its own hook ref wins over the project's
            moved -= {"hook_ref"}
        if not moved:
            continue
        audit(actor, "settings", environment_id=environment.id, reason=f"project {project.name} changed",
              details={"project": project.name,
                       "changes": {f"project.{key}": changed[key] for key in sorted(moved)},
                       "weakens_gate": [f"project.{key}" for key in sorted(moved)]})
