"""Changing a project's repository, branch and hook ref, audited (old → new).

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
    commit_changes()
    return sorted(changed)
