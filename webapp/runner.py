"""Prepare a checkout and run a release's pre-release hook or release command.

Called by the worker's jobs. What a result means for the release is decided by
releases.py; this module only fetches, checks out, runs within limits and reports.
No database transaction stays open while a hook or command runs.

Everything before the run has no side effect outside the workspace (reading the release,
git, the checkout, the pre-flight check), so it happens before the run is claimed: the claim
and the pinned commit are then one compare-and-set, and a worker lost before it is simply
queued again by the reconciler, nothing having run.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from . import hook_account, hooks, releases, repos, supervise
from .extensions import db
from .models import Environment, Project, Release, Variable
from .outage import persist, unless_down

# What a job may do before claiming its run: fail the release, but only while nobody claimed it.
UNCLAIMED = {"hook": (Release.hook_started_at.is_(None),), "execute": (Release.exec_started_at.is_(None),)}


@dataclass(frozen=True)
class RunContext:
    """Plain values copied out of the database, so no transaction is held during a run."""

    release_id: int
    project: str
    repo: str
    branch: str
    hook_ref: str | None
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

    @classmethod
    def read(cls, release_id: int, stage: str) -> RunContext | None:
        """The settings of a hook ("hook") or apply ("execute") run, in one read; None when the
        release is not in that stage's state or the run was claimed already."""
        expect, started = (("READY", Release.hook_started_at) if stage == "hook"
                           else ("IN_PROGRESS", Release.exec_started_at))
        row = db.session.execute(
            sa.select(Release.ref, Release.commit, Release.resources, Release.environment_id,
                      Project.name, Project.repo, Project.branch, Project.hook_ref.label("project_hook_ref"),
                      Environment.hook_ref, Environment.name.label("environment"), Environment.release_stream,
                      Environment.hook_timeout_seconds, Environment.release_timeout_seconds,
                      Environment.release_command, Environment.wait_for_external_finish)
            .join(Project, Release.project_id == Project.id)
            .join(Environment, Release.environment_id == Environment.id)
            .where(Release.id == release_id, Release.state == expect, started.is_(None))).one_or_none()
        variables = () if row is None else tuple(tuple(variable) for variable in db.session.execute(
            sa.select(Variable.name, Variable.value, Variable.secret, Variable.for_hooks)
            .where(Variable.environment_id == row.environment_id).order_by(Variable.name)))
        db.session.rollback()  # end the read transaction before any slow work
        if row is None:
            return None
        return cls(
            release_id=release_id, project=row.name, repo=row.repo, branch=row.branch,
            hook_ref=row.hook_ref or row.project_hook_ref, environment=row.environment,
            release_stream=row.release_stream, ref=row.ref, commit=row.commit, resources=list(row.resources or []),
            hook_timeout=row.hook_timeout_seconds, release_timeout=row.release_timeout_seconds,
            release_command=(row.release_command or "").strip() or None,
            wait_for_external_finish=row.wait_for_external_finish, variables=variables)

    def payload(self, commit: str) -> dict:
        return {"environmentName": self.environment, "releaseStream": self.release_stream,
                "resources": self.resources, "releaseId": self.release_id, "projectName": self.project,
                "commit": commit}

    def environ(self, home: Path, *, hooks_only: bool) -> dict[str, str]:
        variables = {name: value for name, value, _secret, for_hooks in self.variables
                     if for_hooks or not hooks_only}
        return hooks.hook_environment(release_id=self.release_id, project=self.project,
                                      environment=self.environment, release_stream=self.release_stream,
                                      home=home, variables=variables)

    @property
    def secrets(self) -> list[str]:
        return [value for _name, value, secret, _hooks in self.variables if secret and value]


WORK_ROOT = Path(tempfile.gettempdir()) / "releasegate-work"


@contextmanager
def workspace(context: RunContext, commit: str) -> Iterator[tuple[Path, Path, Path]]:
    """A fresh directory with the payload, a private HOME and room for the checkout; removed after.

    Its name starts with this worker's pid, so sweep_workspaces() can remove what a
    killed worker left behind.
    """
    WORK_ROOT.mkdir(mode=0o711, exist_ok=True)  # others may enter (a HOOK_USER their own), not list
    root = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{context.release_id}-", dir=WORK_ROOT))
    try:
        payload, home, checkout = root / "payload.json", root / "home", root / "checkout"
        payload.write_text(json.dumps(context.payload(commit), indent=2))
        home.mkdir()
        yield checkout, payload, home
    finally:
        _discard(root)


_trash: queue.SimpleQueue[Path] = queue.SimpleQueue()
_janitor: list[threading.Thread] = []
_command_running = threading.Event()  # the main thread is only waiting for a hook or command
TRASH_WAIT = 5.0  # seconds a workspace waits for such a moment before it is removed anyway


def _discard(root: Path) -> None:
    """Remove a finished workspace off the job's path: unlinking a checkout costs milliseconds
    (more on a disk mounted with `discard`), and the next release need not wait for it. What a
    killed worker leaves in the queue, sweep_workspaces() removes."""
    if not _janitor or not _janitor[0].is_alive():
        _janitor[:] = [threading.Thread(target=_empty_trash, name="workspace-janitor", daemon=True)]
        _janitor[0].start()
    _trash.put(root)


def _empty_trash() -> None:
    while True:
        root = _trash.get()
        # Unlinking takes the GIL between system calls, which would slow the next run's
        # preparation down by a switch interval at a time: wait until a command runs instead.
        _command_running.wait(TRASH_WAIT)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _command() -> Iterator[None]:
    """Mark the time the main thread spends waiting for a hook or command (see _empty_trash)."""
    _command_running.set()
    try:
        yield
    finally:
        _command_running.clear()


def sweep_workspaces() -> list[Path]:
    """Remove workspaces whose worker process is gone (killed mid-run); returns them."""
    removed = []
    for directory in WORK_ROOT.glob("*-*-*") if WORK_ROOT.is_dir() else ():
        pid = directory.name.split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _settings() -> tuple[Path, str, int, float]:
    config = current_app.config
    lost = config["WORKER_LOST_SECONDS"]
    return (Path(config["REPO_CACHE_DIR"]), config["HOOK_PYTHON"], config["HOOK_OUTPUT_CAP"],
            max(0.5, min(5.0, lost / 4)))


def _hook_account(root: Path) -> supervise.Account | None:
    """With HOOK_USER set: hand the workspace `root` to that account and return it."""
    name = current_app.config.get("HOOK_USER")
    if not name:
        return None
    account = hook_account.resolve(name)
    if WORK_ROOT.stat().st_mode & 0o011 != 0o011:
        WORK_ROOT.chmod(0o711)  # made before HOOK_USER was set
    hook_account.hand_over(root, account)
    return account


def _fetch(context: RunContext) -> tuple[Path, str]:
    """Fetch the mirror (skipped when a pinned commit is already in it) and resolve the commit."""
    cache_dir, *_ = _settings()
    git_dir = repos.fetch(context.repo, cache_dir, commit=context.commit)
    commit = context.commit or repos.resolve_commit(git_dir, context.ref or context.branch)
    return git_dir, commit


def run_pre_release_hook(release_id: int) -> None:
    context = persist(RunContext.read, release_id, "hook")
    if context is None:
        return  # already run or no longer READY: jobs are at-least-once
    _cache, python, cap, tick = _settings()
    hook_ref = context.hook_ref or context.branch
    try:
        git_dir, commit = _fetch(context)
        hook_ref_commit, hook, own = repos.find_hooks(git_dir, hook_ref, commit, context.project)
    except repos.RepoError as error:
        persist(releases.fail, release_id, str(error), expect=("READY",), where=UNCLAIMED["hook"])
        return
    pinned = {"commit": commit, "hook_ref_commit": hook_ref_commit, "hook_path": hook.path if hook else None}
    if hook is None:
        if persist(releases.claim_run, release_id, "hook", **pinned):
            persist(releases.record_hook_result, release_id, exit_code=None, output="", truncated=False, error=(
                f"No pre-release hook was found at {hook_ref} ({hook_ref_commit[:12]}): add "
                f"{context.project}/pre_release_hooks/pre_release_hook.py or .sh to the repository."))
        return
    differs = None
    if own is None or (own.path, own.blob) != (hook.path, hook.blob):
        differs = (f"The pre-release hook at commit {commit[:12]} differs from the one at the hook ref "
                   f"{hook_ref} ({hook_ref_commit[:12]}), so this release needs approval whatever the hook says.")

    def on_tick(output: str, truncated: bool) -> bool:
        return unless_down(releases.heartbeat, True, release_id, "READY", hook_output=output,
                           hook_truncated=truncated)

    with workspace(context, commit) as (checkout, payload, home):
        try:
            repos.checkout(git_dir, commit, checkout)
        except repos.RepoError as error:
            persist(releases.fail, release_id, str(error), expect=("READY",), where=UNCLAIMED["hook"])
            return
        script = checkout / hook.path
        _place_hook(script, hook.content)
        problem = hooks.preflight(script, hook.kind)
        if not persist(releases.claim_run, release_id, "hook", **pinned):
            return  # another job of this release claimed it first
        if problem:
            persist(releases.record_hook_result, release_id, exit_code=None, output="", truncated=False,
                    error=problem)
            return
        user = _hook_account(checkout.parent)
        with _command():
            result = hooks.run_hook(script, hook.kind, payload, cwd=checkout,
                                    env=context.environ(home, hooks_only=True), timeout=context.hook_timeout,
                                    output_cap=cap, python=python, on_tick=on_tick, tick_seconds=tick,
                                    mask=context.secrets, user=user)
    if result.stopped:
        return  # aborted: the release already moved on
    output = result.output + (f"\n[releasegate] {differs}\n" if differs else "")
    error = (f"The pre-release hook timed out after {context.hook_timeout} seconds and was killed."
             if result.timed_out else result.error)
    persist(releases.record_hook_result, release_id, exit_code=result.exit_code, output=output,
            truncated=result.truncated, error=error, needs_approval_reason=differs)


def _place_hook(script: Path, content: bytes) -> None:
    """Run the hook ref's version of the hook, as a regular file inside the checkout."""
    script.parent.mkdir(parents=True, exist_ok=True)
    if script.is_symlink() or script.exists():
        script.unlink()
    script.write_bytes(content)


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
    _cache, _python, cap, tick = _settings()
    try:
        git_dir, commit = _fetch(context)
    except repos.RepoError as error:
        persist(releases.fail, release_id, str(error), expect=("IN_PROGRESS",), where=UNCLAIMED["execute"])
        return

    def on_tick(output: str, truncated: bool) -> bool:
        return unless_down(releases.heartbeat, True, release_id, "IN_PROGRESS", exec_output=output,
                           exec_truncated=truncated)

    with workspace(context, commit) as (checkout, payload, home):
        try:
            repos.checkout(git_dir, commit, checkout)
        except repos.RepoError as error:
            persist(releases.fail, release_id, str(error), expect=("IN_PROGRESS",), where=UNCLAIMED["execute"])
            return
        if not persist(releases.claim_run, release_id, "execute", commit=commit,
                       exec_command=context.release_command):
            return
        env = context.environ(home, hooks_only=False) | {"RELEASE_PAYLOAD": str(payload)}
        # The payload is the shell's $1 and RELEASE_PAYLOAD: `./deploy.sh "$1"` passes it on.
        argv = ["bash", "-c", context.release_command, "release_command", str(payload)]
        user = _hook_account(checkout.parent)
        with _command():
            result = supervise.run_limited(argv, cwd=checkout, env=env, timeout=context.release_timeout,
                                           output_cap=cap, on_tick=on_tick, tick_seconds=tick, mask=context.secrets,
                                           user=user)
    if result.stopped:
        return
    error = (f"The release command timed out after {context.release_timeout} seconds and was killed."
             if result.timed_out else result.error)
    persist(releases.record_execution_result, release_id, exit_code=result.exit_code, output=result.output,
            truncated=result.truncated, timed_out=result.timed_out, error=error)
