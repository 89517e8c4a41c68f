"""A release's pre-release hook or release command, read straight through:

    read the release → fetch → checkout → place the trusted hook → claim → run in the sandbox → record

Called by the worker's jobs. What a result means for the release is decided by webapp/releases/;
this module only prepares, runs within limits and reports. No database transaction stays open
while a hook or command runs. Everything before the claim has no effect outside the workspace,
so a worker lost before it is simply queued again by the reconciler, nothing having run.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app

from .. import approval_rules, environments, releases
from ..extensions import db
from ..models import Environment, Project, Release, Variable
from . import account, git, hook, limits, sandbox, since
from .outage import persist, unless_down
from .workspace import Workspace, workspace

# What a job may do before claiming its run: fail the release, but only while nobody claimed it.
log = logging.getLogger(__name__)
UNCLAIMED = {"hook": (Release.hook_started_at.is_(None),), "execute": (Release.exec_started_at.is_(None),)}


@dataclass(frozen=True)
class RunContext:
    """Plain values copied out of the database, so no transaction is held during a run."""

    release_id: int
    project: str
    repo: str
    branch: str
    hook_ref: str
    environment: str
    release_stream: str
    ref: str | None
    commit: str | None
    resources: list
    hook_timeout: int
    release_timeout: int
    release_command: str | None
    wait_for_external_finish: bool
    variables: tuple[tuple[str, str, bool, bool], ...]  # name, value, secret, for_hooks
    sandbox_paths: tuple = ()  # the environment's extra host paths for its release command, as stored
    changes: dict | None = None  # what changed since the last release, once computed (Release.since)
    previous: since.Previous | None = None  # the environment's newest SUCCEEDED release before it

    @classmethod
    def read(cls, release_id: int, stage: str) -> RunContext | None:
        """The settings of a hook ("hook") or apply ("execute") run; None when the release is
        not in that stage's state or its run was claimed already."""
        started = Release.hook_started_at if stage == "hook" else Release.exec_started_at
        rows = db.session.execute(
            sa.select(Release.ref, Release.commit, Release.resources, Release.environment_id,
                      Release.since, Project.name, Project.repo, Project.branch,
                      Project.hook_ref.label("project_hook_ref"), Environment.hook_ref,
                      Environment.name.label("environment"), Environment.release_stream,
                      Environment.hook_timeout_seconds, Environment.release_timeout_seconds,
                      Environment.release_command, Environment.wait_for_external_finish, Environment.sandbox_paths,
                      Variable.name.label("variable"), Variable.value, Variable.secret, Variable.for_hooks)
            .join(Project, Release.project_id == Project.id)
            .join(Environment, Release.environment_id == Environment.id)
            .outerjoin(Variable, Variable.environment_id == Environment.id)
            .where(Release.id == release_id, Release.state == _STAGE_STATE[stage], started.is_(None))
            .order_by(Variable.name)).all()
        if not rows:
            db.session.rollback()
            return None
        row = rows[0]
        previous = db.session.execute(
            sa.select(Release.id, Release.commit, Release.resources)
            .where(Release.environment_id == row.environment_id, Release.state == "SUCCEEDED", Release.id != release_id)
            .order_by(Release.finished_at.desc(), Release.id.desc()).limit(1)).first() if row.since is None else None
        db.session.rollback()  # end the read transaction before any slow work
        return cls(
            release_id=release_id, project=row.name, repo=row.repo, branch=row.branch,
            hook_ref=row.hook_ref or row.project_hook_ref or row.branch, environment=row.environment,
            release_stream=row.release_stream, ref=row.ref, commit=row.commit, resources=list(row.resources or []),
            hook_timeout=row.hook_timeout_seconds, release_timeout=row.release_timeout_seconds,
            release_command=(row.release_command or "").strip() or None,
            wait_for_external_finish=row.wait_for_external_finish,
            sandbox_paths=tuple(row.sandbox_paths or ()), changes=row.since,
            previous=since.Previous(previous.id, previous.commit, list(previous.resources or []))
            if previous is not None else None,
            variables=tuple((r.variable, r.value, r.secret, r.for_hooks) for r in rows if r.variable is not None))

    def payload(self, commit: str, changes: dict | None = None) -> dict:
        """The JSON a hook or release command reads. Keys may be added, never removed (SPEC §4)."""
        changes = changes or {}
        return {"environmentName": self.environment, "releaseStream": self.release_stream,
                "resources": self.resources, "releaseId": self.release_id, "projectName": self.project,
                "commit": commit, "previousCommit": changes.get("previous_commit"),
                "commits": changes.get("commits", []), "files": changes.get("files", []),
                # A list cut short, or none at all, must never read as "nothing changed".
                "commitsTruncated": bool(changes.get("commits_truncated")),
                "filesTruncated": bool(changes.get("files_truncated")), "sinceError": changes.get("error")}

    def changes_since(self, git_dir: Path, commit: str) -> dict:
        """What changed since the last successful release: as stored, or computed now."""
        return self.changes if self.changes is not None else since.compute(git_dir, commit, self.previous,
                                                                            self.resources)

    def environ(self, home: Path, *, hooks_only: bool) -> dict[str, str]:
        variables = {name: value for name, value, _secret, for_hooks in self.variables
                     if for_hooks or not hooks_only}
        if hooks_only:
            variables = hook.hook_variables(variables)
        return hook.hook_environment(release_id=self.release_id, project=self.project,
                                     environment=self.environment, release_stream=self.release_stream,
                                     home=home, variables=variables)

    @property
    def secrets(self) -> list[str]:
        return [value for _name, value, secret, _hooks in self.variables if secret and value]


_STAGE_STATE = {"hook": "READY", "execute": "IN_PROGRESS"}


# -- the pre-release hook -------------------------------------------------------------------


def run_pre_release_hook(release_id: int) -> None:
    context = persist(RunContext.read, release_id, "hook")
    if context is None:
        return  # already run or no longer READY: jobs are at-least-once
    with workspace(context.release_id) as space:
        try:
            # Always fetched: the hook ref must be read as it is now, never from a stale mirror.
            git_dir = git.fetch(context.repo, _cache_dir())
            commit = context.commit or git.resolve_commit(git_dir, context.ref or context.branch)
            hook_ref_commit = git.resolve_commit(git_dir, context.hook_ref)
            git.checkout(git_dir, commit, space.checkout)
            trusted = hook.place_trusted_hook(git_dir, hook_ref_commit, context.project, space.hooks)
            differences = hook.folder_differences(git_dir, commit, hook_ref_commit, context.project)
            changes = context.changes_since(git_dir, commit)
        except Exception as error:  # noqa: BLE001 - nothing ran yet: fail closed, free the slot
            persist(releases.fail, release_id, _unprepared(error), expect=("READY",), where=UNCLAIMED["hook"])
            return
        space.payload.write_text(json.dumps(context.payload(commit, changes), indent=2))
        if not persist(releases.claim_run, release_id, "hook", commit=commit, hook_ref_commit=hook_ref_commit,
                       hook_path=trusted.path if trusted else None, **_new_since(context, changes)):
            return  # another job of this release claimed it first
        if trusted is None:
            _record_hook_problem(release_id, f"No pre-release hook was found at {context.hook_ref} "
                                 f"({hook_ref_commit[:12]}): add {hook.hook_folder(context.project)}/"
                                 "pre_release_hook.py or .sh to the repository.")
            return
        problem = hook.preflight(trusted.script, trusted.kind)
        if problem:
            _record_hook_problem(release_id, problem)
            return
        argv = hook.hook_argv(trusted.script, trusted.kind, space.payload, _config("HOOK_PYTHON"))
        env = context.environ(space.home, hooks_only=True) | {"RELEASE_VERDICT": str(space.verdict)}
        result = _run(context, space, argv, stage="hook", env=env, binds=space.binds(hook_folder=True),
                      timeout=context.hook_timeout)
        try:
            verdict = read_verdict(space.verdict) if result.exit_code == 2 else None
        except approval_rules.RuleError as problem:
            verdict, result = None, dataclasses.replace(result, error=str(problem))
    if result.stopped:
        return  # aborted: the release already moved on
    differs = _differs_reason(context, commit, hook_ref_commit, differences)
    error = (f"The pre-release hook timed out after {context.hook_timeout} seconds and was killed."
             if result.timed_out else result.error)
    if error is None and result.exit_code not in (0, 2):
        error = _hook_failed(result.exit_code, result.output)
    persist(releases.record_hook_result, release_id, exit_code=result.exit_code, output=result.output,
            truncated=result.truncated, error=error, needs_approval_reason=differs, verdict=verdict)


def read_verdict(path: Path) -> bytes | None:
    """What the hook wrote to $RELEASE_VERDICT (None: nothing). The hook owns that file and its
    folder, so both are opened without following links and the file must be a regular one of
    its own: a link, a FIFO or a device fails the release, never a read of what it points to."""
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        raise approval_rules.RuleError(f"{NOT_A_VERDICT_FILE} ({error.strerror}).") from None
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except FileNotFoundError:
        return None
    except OSError as error:  # ELOOP: a symlink
        raise approval_rules.RuleError(f"{NOT_A_VERDICT_FILE} ({error.strerror}).") from None
    finally:
        os.close(folder)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # a folder, a FIFO, a hard link
            raise approval_rules.RuleError(f"{NOT_A_VERDICT_FILE}.")
        return os.read(fd, approval_rules.VERDICT_LIMIT + 1)
    except OSError as error:
        raise approval_rules.RuleError(f"{NOT_A_VERDICT_FILE} ({error.strerror}).") from None
    finally:
        os.close(fd)


NOT_A_VERDICT_FILE = ("The hook's verdict ($RELEASE_VERDICT) is not a regular file; write the JSON into that "
                      "path itself")


def _new_since(context: RunContext, changes: dict) -> dict:
    """The values claim_run stores with a run: what changed, when it was computed for this run."""
    return {"since": changes} if context.changes is None else {}


def _unprepared(error: Exception) -> str:
    """The sentence a release fails with when its run could not be prepared."""
    if isinstance(error, git.RepoError | ValueError):
        return str(error)
    log.exception("preparing a run failed")
    return f"The run could not be prepared ({type(error).__name__}); nothing was run. See the worker's log."


def _record_hook_problem(release_id: int, problem: str) -> None:
    persist(releases.record_hook_result, release_id, exit_code=None, output="", truncated=False, error=problem)


def _hook_failed(exit_code: int | None, output: str) -> str:
    """A failed hook's error, quoting its last line: usually the reason it gave."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return f"The pre-release hook exited {exit_code}."
    last = lines[-1] if len(lines[-1]) <= 200 else lines[-1][:199] + "…"
    return f"The pre-release hook exited {exit_code}; its last line: \u201c{last}\u201d"


def _differs_reason(context: RunContext, commit: str, hook_ref_commit: str, differences: list[str]) -> str | None:
    if not differences:
        return None
    return (f"The hook folder {hook.hook_folder(context.project)}/ at commit {commit[:12]} differs from the one "
            f"at the hook ref {context.hook_ref} ({hook_ref_commit[:12]}): {', '.join(differences)}; so this "
            "release needs approval whatever the hook says.")


# -- the release command --------------------------------------------------------------------


def execute_release(release_id: int) -> None:
    context = persist(RunContext.read, release_id, "execute")
    if context is None:
        return
    if context.release_command is None:
        if not persist(releases.claim_run, release_id, "execute"):
            return
        if context.wait_for_external_finish:
            persist(releases.await_external_finish, release_id)
        else:
            persist(releases.succeed_without_command, release_id)
        return
    with workspace(context.release_id) as space:
        try:
            # The release's own pinned commit never changes: no fetch when the mirror has it.
            git_dir = git.mirror_with(context.repo, _cache_dir(), context.commit)
            commit = context.commit or git.resolve_commit(git_dir, context.ref or context.branch)
            git.checkout(git_dir, commit, space.checkout)
            # Judged again now: the operator may have narrowed SANDBOX_ALLOWED_PATHS since they were saved.
            host_paths = environments.release_command_binds(list(context.sandbox_paths),
                                                            _config("SANDBOX_ALLOWED_PATHS"))
            changes = context.changes_since(git_dir, commit)  # a release dispatched without a hook
            git.keep(git_dir, commit)  # what the next release of this environment compares itself with
        except Exception as error:  # noqa: BLE001 - nothing ran yet: fail closed, free the slot
            persist(releases.fail, release_id, _unprepared(error), expect=("IN_PROGRESS",),
                    where=UNCLAIMED["execute"])
            return
        space.payload.write_text(json.dumps(context.payload(commit, changes), indent=2))
        if not persist(releases.claim_run, release_id, "execute", commit=commit,
                       exec_command=context.release_command, **_new_since(context, changes)):
            return
        env = context.environ(space.home, hooks_only=False) | {"RELEASE_PAYLOAD": str(space.payload)}
        # The payload is the shell's $1 and RELEASE_PAYLOAD: `./deploy.sh "$1"` passes it on.
        argv = ["bash", "-c", context.release_command, "release_command", str(space.payload)]
        binds = space.binds(hook_folder=False) + [sandbox.Bind(path, writable) for path, writable in host_paths]
        result = _run(context, space, argv, stage="execute", env=env, binds=binds, timeout=context.release_timeout)
    if result.stopped:
        return
    error = (f"The release command timed out after {context.release_timeout} seconds and was killed."
             if result.timed_out else result.error)
    persist(releases.record_execution_result, release_id, exit_code=result.exit_code, output=result.output,
            truncated=result.truncated, timed_out=result.timed_out, error=error)


# -- running in the sandbox -----------------------------------------------------------------


def _run(context: RunContext, space: Workspace, argv: list[str], *, stage: str, env: dict[str, str],
         binds: list[sandbox.Bind], timeout: int) -> limits.RunResult:
    state, column = ("READY", "hook") if stage == "hook" else ("IN_PROGRESS", "exec")

    def on_tick(output: str, truncated: bool) -> bool:  # heartbeat; False once the release moved on
        return unless_down(releases.heartbeat, True, context.release_id, state,
                           **{f"{column}_output": output, f"{column}_truncated": truncated})

    user = None
    if _config("HOOK_USER"):
        user = account.resolve(_config("HOOK_USER"))
        account.hand_over(space.root, user)
    box = sandbox.launch(argv, cwd=space.checkout, binds=binds, mode=_config("HOOK_SANDBOX"), account=user, env=env)
    return limits.run_limited(box.argv, cwd=space.checkout, env=box.env, timeout=timeout,
                              output_cap=_config("HOOK_OUTPUT_CAP"), on_tick=on_tick, tick_seconds=_tick_seconds(),
                              mask=[*context.secrets, *application_secrets()])


def application_secrets() -> list[str]:
    """The application's own secrets, masked in stored output should a run ever print one."""
    config = current_app.config
    urls = (config["SQLALCHEMY_DATABASE_URI"], config.get("REDIS_URL") or "")
    return [secret for secret in (config["SECRET_KEY"], config.get("MAIL_PASSWORD"),
                                  *(urlsplit(url).password for url in urls)) if secret]


def _config(name: str):
    return current_app.config[name]


def _cache_dir() -> Path:
    return Path(_config("REPO_CACHE_DIR"))


def _tick_seconds() -> float:
    return max(0.5, min(5.0, _config("WORKER_LOST_SECONDS") / 4))
