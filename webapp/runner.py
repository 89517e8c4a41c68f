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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from . import ahead, hook_account, hooks, releases, repos, supervise
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
    environment_id: int = 0
    # Whether a release waited behind this one when it was read: worth preparing it meanwhile.
    queued_behind: bool = field(default=False, compare=False)

    @classmethod
    def read(cls, release_id: int, stage: str, *, state: str | None = None) -> RunContext | None:
        """The settings of a hook ("hook") or apply ("execute") run, in one query; None when the
        release is not in that stage's state (or `state`) or the run was claimed already."""
        rows = db.session.execute(_CONTEXT[stage], {"release_id": release_id,
                                                     "state": state or _STAGE_STATE[stage]}).all()
        db.session.rollback()  # end the read transaction before any slow work
        if not rows:
            return None
        row = rows[0]
        return cls(
            release_id=release_id, project=row.name, repo=row.repo, branch=row.branch,
            hook_ref=row.hook_ref or row.project_hook_ref, environment=row.environment,
            release_stream=row.release_stream, ref=row.ref, commit=row.commit, resources=list(row.resources or []),
            hook_timeout=row.hook_timeout_seconds, release_timeout=row.release_timeout_seconds,
            release_command=(row.release_command or "").strip() or None,
            wait_for_external_finish=row.wait_for_external_finish, environment_id=row.environment_id,
            queued_behind=bool(row.queued_behind),
            variables=tuple((r.variable, r.value, r.secret, r.for_hooks) for r in rows if r.variable is not None))

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


def _context_query(started: sa.Column) -> sa.Select:
    """The release, its project and environment, and one row per variable (Core: a fraction of
    the ORM's cost per query, and this runs before every hook)."""
    release, project = Release.__table__, Project.__table__
    environment, variable = Environment.__table__, Variable.__table__
    behind = Release.__table__.alias("behind")
    queued_behind = sa.exists().where(behind.c.environment_id == release.c.environment_id,
                                      behind.c.state == "QUEUED", behind.c.id != release.c.id)
    return (sa.select(queued_behind.label("queued_behind"),
                      release.c.ref, release.c.commit, release.c.resources, release.c.environment_id,
                      project.c.name, project.c.repo, project.c.branch,
                      project.c.hook_ref.label("project_hook_ref"), environment.c.hook_ref,
                      environment.c.name.label("environment"), environment.c.release_stream,
                      environment.c.hook_timeout_seconds, environment.c.release_timeout_seconds,
                      environment.c.release_command, environment.c.wait_for_external_finish,
                      variable.c.name.label("variable"), variable.c.value, variable.c.secret, variable.c.for_hooks)
            .select_from(release.join(project, release.c.project_id == project.c.id)
                         .join(environment, release.c.environment_id == environment.c.id)
                         .outerjoin(variable, variable.c.environment_id == environment.c.id))
            .where(release.c.id == sa.bindparam("release_id"), release.c.state == sa.bindparam("state"),
                   started.is_(None))
            .order_by(variable.c.name))


_CONTEXT = {"hook": _context_query(Release.__table__.c.hook_started_at),
            "execute": _context_query(Release.__table__.c.exec_started_at)}
_STAGE_STATE = {"hook": "READY", "execute": "IN_PROGRESS"}

WORK_ROOT = Path(tempfile.gettempdir()) / "releasegate-work"


def new_workspace(context: RunContext, commit: str) -> Path:
    """A fresh directory with the payload (payload.json), a private HOME (home/) and room for
    the checkout (checkout/). Its name starts with this worker's pid, so sweep_workspaces()
    can remove what a killed worker left behind."""
    WORK_ROOT.mkdir(mode=0o711, exist_ok=True)  # others may enter (a HOOK_USER their own), not list
    root = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{context.release_id}-", dir=WORK_ROOT))
    (root / "payload.json").write_text(json.dumps(context.payload(commit), indent=2))
    (root / "home").mkdir()
    return root


@contextmanager
def workspace(context: RunContext, commit: str) -> Iterator[tuple[Path, Path, Path]]:
    """new_workspace() as (checkout, payload, home), removed after."""
    root = new_workspace(context, commit)
    try:
        yield root / "checkout", root / "payload.json", root / "home"
    finally:
        _discard(root)


_trash: queue.SimpleQueue[tuple[Path, float]] = queue.SimpleQueue()  # (workspace, when discarded)
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
    _trash.put((root, time.monotonic()))


def _empty_trash() -> None:
    while True:
        root, discarded_at = _trash.get()
        # Unlinking takes the GIL between system calls, which would slow the next run's
        # preparation down by a switch interval at a time: wait until a command runs instead,
        # but never longer than TRASH_WAIT after the workspace was discarded, so a backlog
        # left by an idle spell drains at once rather than TRASH_WAIT per workspace.
        _command_running.wait(max(0.0, discarded_at + TRASH_WAIT - time.monotonic()))
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


@dataclass
class Prepared:
    """Everything a hook run needs before it is claimed (none of it has a side effect outside
    the workspace): git's answers, and the workspace with the checkout and the hook in place."""

    context: RunContext
    git_dir: Path
    commit: str
    hook_ref_commit: str
    hook: repos.HookScript | None
    own: repos.HookScript | None  # the hook at the release's own commit
    root: Path | None = None  # the workspace, when there is a hook to run
    problem: str | None = None  # what the pre-flight check found

    @property
    def pinned(self) -> dict:
        return {"commit": self.commit, "hook_ref_commit": self.hook_ref_commit,
                "hook_path": self.hook.path if self.hook else None}

    @property
    def script(self) -> Path:
        return self.root / "checkout" / self.hook.path

    def discard(self) -> None:
        if self.root is not None:
            _discard(self.root)


def prepare_hook(context: RunContext) -> Prepared:
    """Fetch, resolve, find the hooks, write the workspace and check the hook; RepoError on a
    repository problem (the workspace is then gone again)."""
    git_dir, commit = _fetch(context)
    hook_ref_commit, hook, own = repos.find_hooks(git_dir, context.hook_ref or context.branch, commit,
                                                  context.project)
    prepared = Prepared(context, git_dir, commit, hook_ref_commit, hook, own)
    if hook is not None:
        prepared.root = new_workspace(context, commit)
        try:
            repos.checkout(git_dir, commit, prepared.root / "checkout")
            _place_hook(prepared.script, hook.content)
            prepared.problem = hooks.preflight(prepared.script, hook.kind)
        except BaseException:
            prepared.discard()
            raise
    return prepared


def run_pre_release_hook(release_id: int) -> None:
    context = persist(RunContext.read, release_id, "hook")
    if context is None:
        return  # already run or no longer READY: jobs are at-least-once
    try:
        prepared = ahead.take(context) or prepare_hook(context)
    except repos.RepoError as error:
        persist(releases.fail, release_id, str(error), expect=("READY",), where=UNCLAIMED["hook"])
        return
    try:
        _run_prepared_hook(prepared)
    finally:
        prepared.discard()


def _run_prepared_hook(prepared: Prepared) -> None:
    context, hook, release_id = prepared.context, prepared.hook, prepared.context.release_id
    hook_ref, hook_ref_commit, commit = context.hook_ref or context.branch, prepared.hook_ref_commit, prepared.commit
    if not persist(releases.claim_run, release_id, "hook", **prepared.pinned):
        return  # another job of this release claimed it first
    if hook is None:
        persist(releases.record_hook_result, release_id, exit_code=None, output="", truncated=False, error=(
            f"No pre-release hook was found at {hook_ref} ({hook_ref_commit[:12]}): add "
            f"{context.project}/pre_release_hooks/pre_release_hook.py or .sh to the repository."))
        return
    if prepared.problem:
        persist(releases.record_hook_result, release_id, exit_code=None, output="", truncated=False,
                error=prepared.problem)
        return
    differs = None
    if prepared.own is None or (prepared.own.path, prepared.own.blob) != (hook.path, hook.blob):
        differs = (f"The pre-release hook at commit {commit[:12]} differs from the one at the hook ref "
                   f"{hook_ref} ({hook_ref_commit[:12]}), so this release needs approval whatever the hook says.")

    def on_tick(output: str, truncated: bool) -> bool:
        return unless_down(releases.heartbeat, True, release_id, "READY", hook_output=output,
                           hook_truncated=truncated)

    _cache, python, cap, tick = _settings()
    user = _hook_account(prepared.root)
    with _command():
        # Once the hook is on its way (not before: the side thread would take the GIL from the
        # spawn), the release queued behind this one is prepared while the hook runs.
        result = hooks.run_hook(prepared.script, hook.kind, prepared.root / "payload.json",
                                cwd=prepared.root / "checkout", env=context.environ(prepared.root / "home",
                                                                                    hooks_only=True),
                                timeout=context.hook_timeout, output_cap=cap, python=python, on_tick=on_tick,
                                tick_seconds=tick, mask=context.secrets, user=user,
                                on_start=lambda: _prepare_next_meanwhile(context))
    if result.stopped:
        return  # aborted: the release already moved on
    output = result.output + (f"\n[releasegate] {differs}\n" if differs else "")
    error = (f"The pre-release hook timed out after {context.hook_timeout} seconds and was killed."
             if result.timed_out else result.error)
    persist(releases.record_hook_result, release_id, exit_code=result.exit_code, output=output,
            truncated=result.truncated, error=error, needs_approval_reason=differs)


def _prepare_next_meanwhile(context: RunContext) -> None:
    if context.queued_behind:  # nothing waited when this release was read: no query for it
        ahead.prepare_next(context)


def _place_hook(script: Path, content: bytes) -> None:
    """Run the hook ref's version of the hook, as a regular file inside the checkout (usually
    it is there already: then nothing is written)."""
    script.parent.mkdir(parents=True, exist_ok=True)
    if script.is_symlink() or script.exists():
        if not script.is_symlink() and script.is_file() and script.read_bytes() == content:
            return
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
