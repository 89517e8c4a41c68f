"""How rows read in the API (SPEC §7)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from .. import approval_rules, changes, windows
from ..extensions import db
from ..models import SLOT_STATES, AuditEvent, Decision, Environment, Grant, Group, Project, Release, User, utcnow

SETTINGS = ("release_stream", "approval_workflow", "parallel_releases", "release_command", "hook_ref",
            "hook_timeout_seconds", "release_timeout_seconds", "allow_self_approval",
            "wait_for_external_finish", "approval_timeout_hours", "reminder_hours", "sandbox_paths", "approval_rules",
            "authors_may_not_approve", "change_windows", "freezes", "allow_break_glass", "break_glass_review_hours")


def iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def project_dict(project: Project) -> dict:
    return {"name": project.name, "repo": project.repo, "branch": project.branch, "hook_ref": project.hook_ref,
            "web_url_template": project.web_url_template, "change_windows": project.change_windows,
            "freezes": project.freezes, "environments": [e.name for e in project.environments],
            "created_at": iso(project.created_at)}


def environment_dict(environment: Environment, *, live: bool = True) -> dict:
    data = {"project": environment.project.name, "name": environment.name, "mode": environment.mode}
    data.update({key: getattr(environment, key) for key in SETTINGS})
    data["variables"] = [{"name": v.name, "secret": v.secret, "for_hooks": v.for_hooks,
                          "value": None if v.secret else v.value} for v in environment.variables]
    if live:
        verdict = windows.judge_environment(environment, utcnow())
        data["window"] = {"open": verdict.open, "reason": verdict.reason or None, "until": iso(verdict.until)}
        data["active"] = [release_summary(r) for r in active_releases(environment.id)]
        data["queue"] = [release_summary(r) for r in queued_releases(environment.id)]
    return data


def active_releases(environment_id: int) -> list[Release]:
    return list(db.session.scalars(sa.select(Release).where(
        Release.environment_id == environment_id,
        Release.state.in_(SLOT_STATES)).order_by(Release.id)))


def queued_releases(environment_id: int) -> list[Release]:
    return list(db.session.scalars(sa.select(Release).where(
        Release.environment_id == environment_id, Release.state == "QUEUED").order_by(Release.id)))


def release_summary(release: Release) -> dict:
    return {"id": release.id, "kind": release.kind, "state": release.state,
            "triggered_by": _name(release.triggered_by), "break_glass": release.break_glass_reason is not None,
            "created_at": iso(release.created_at)}


def _name(user: User | None) -> str | None:
    return user.username if user is not None else None


def release_dict(release: Release) -> dict:
    """A release as the API shows it. "approval" is how far its approval rules are (or were) met,
    for a release that has waited for approval (null for a bot release and one that never waited);
    "approval_digest" sums up what was approved: the bot release's, on it and on its original.
    "since" is what changed since the environment's last successful release (null until the
    worker computed it), "since_summary" the same in one line."""
    environment = release.environment
    bot = release.bot_release
    return {
        "id": release.id, "kind": release.kind, "state": release.state,
        "project": release.project.name, "environment": environment.name,
        "release_stream": environment.release_stream, "commit": release.commit, "ref": release.ref,
        "description": release.description, "triggered_by": _name(release.triggered_by),
        "resources": release.resources,
        "hook": {"path": release.hook_path, "ref_commit": release.hook_ref_commit,
                 "exit_code": release.hook_exit_code, "output": release.hook_output or "",
                 "truncated": release.hook_truncated},
        "execution": {"command": release.exec_command, "exit_code": release.exec_exit_code,
                      "output": release.exec_output or "", "truncated": release.exec_truncated},
        "parent_release_id": release.parent_release_id, "bot_release_id": bot.id if bot is not None else None,
        "decisions": [decision_dict(d) for d in release.decisions],
        "approval": approval_dict(release),
        "approval_digest": release.approval_digest or (bot.approval_digest if bot is not None else None),
        "since": release.since, "since_summary": changes.summary(release),
        "scheduled": ({"reason": release.scheduled_reason, "until": iso(release.scheduled_until)}
                      if release.state == "SCHEDULED" else None),
        "break_glass": break_glass_dict(release),
        "error": release.error, "created_at": iso(release.created_at), "started_at": iso(release.started_at),
        "finished_at": iso(release.finished_at),
    }


def break_glass_dict(release: Release) -> dict | None:
    """An emergency release's reason and its review afterwards (null until reviewed); None otherwise."""
    if release.break_glass_reason is None:
        return None
    review = None
    if release.reviewed_at is not None:
        review = {"by": _name(release.reviewed_by), "comment": release.review_comment, "at": iso(release.reviewed_at)}
    return {"reason": release.break_glass_reason, "review": review, "review_due_at": iso(release.review_due_at)}


def approval_dict(release: Release) -> dict | None:
    """{"rules": [{"name", "group", "approvals", "approved_by", "met"}], "reason", "met"}, or None."""
    if release.kind != "RELEASE" or release.pending_since is None:
        return None
    approvals = [d for d in release.decisions if d.decision == "APPROVE"]
    return approval_rules.progress(release, approvals).as_json()


def decision_dict(decision: Decision) -> dict:
    """`rules`: the approval rules an approval counted for; `digest`: what it was given for."""
    return {"by": _name(decision.user), "decision": decision.decision, "comment": decision.comment,
            "via": decision.via, "at": iso(decision.created_at), "rules": list(decision.rules or []),
            "digest": decision.digest}


def event_dict(event: AuditEvent) -> dict:
    return {"id": event.id, "at": iso(event.created_at), "by": _name(event.actor), "via": event.via,
            "action": event.action, "from": event.from_state, "to": event.to_state, "reason": event.reason,
            "details": event.details}


def group_dict(group: Group, grants: list[Grant]) -> dict:
    return {"name": group.name, "description": group.description,
            "members": sorted(user.username for user in group.members),
            "grants": [grant_dict(grant) for grant in grants], "created_at": iso(group.created_at)}


def grant_dict(grant: Grant) -> dict:
    """`environment` is PROJECT/ENV, or null for all environments."""
    environment = grant.environment
    return {"id": grant.id, "permission": grant.permission,
            "environment": f"{environment.project.name}/{environment.name}" if environment is not None else None,
            "created_at": iso(grant.created_at)}
