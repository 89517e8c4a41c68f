"""HOOK_USER (issue 5, item 9): hooks and release commands run as another operating-system
account, in a workspace it owns, and cannot read the application's `.env`, `instance/` or
database file when those have the modes docs/operations.md asks for.

Switching users needs root (or CAP_SETUID, CAP_SETGID and CAP_CHOWN); CI runs as root.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import release, state, trigger

ROOT = Path(__file__).resolve().parents[2]
HOOK_USER = "nobody"

pytestmark = pytest.mark.root  # deselected unless run as root


@pytest.fixture(params=[pytest.param("bwrap", marks=pytest.mark.sandbox), "none"])
def hook_user(request, app_config):
    """HOOK_USER in the sandbox and with HOOK_SANDBOX=none (where the modes alone keep a hook out)."""
    app_config["HOOK_USER"] = HOOK_USER
    app_config["HOOK_SANDBOX"] = request.param
    return pwd.getpwnam(HOOK_USER)


@pytest.fixture()
def deployment():
    """An application folder laid out as docs/operations.md says: world-traversable, so only the
    modes of `.env` (0600), `instance/` (0700) and the database file (0600) keep a hook out;
    beside them a file anyone may read, to show the hook could read what it is allowed to."""
    folder = Path(tempfile.mkdtemp(prefix="releasegate-app-"))
    folder.chmod(0o755)
    (folder / ".env").write_text("SECRET_KEY=the-application-secret\n")
    (folder / ".env").chmod(0o600)
    instance = folder / "instance"
    instance.mkdir(mode=0o700)
    (instance / "releasegate.db").write_bytes(b"SQLite format 3\0 the application's data")
    (instance / "releasegate.db").chmod(0o600)
    (folder / "README.md").write_text("anyone may read this\n")
    (folder / "README.md").chmod(0o644)
    yield folder
    shutil.rmtree(folder)


def probe(app_dir: Path, database: str) -> str:
    """A shell script that reports, line by line, who it runs as and what it could touch."""
    return (
        'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"\n'
        'grep CapEff /proc/self/status\n'
        f'for target in {app_dir}/.env {app_dir}/instance/releasegate.db {database}; do\n'
        '  if cat "$target" >/dev/null 2>&1; then echo "READ $target"; else echo "DENIED $target"; fi\n'
        'done\n'
        f'if ls {app_dir}/instance >/dev/null 2>&1; then echo "LISTED instance"; else echo "DENIED instance"; fi\n'
        f'cat {app_dir}/README.md\n'
        'echo made > "$HOME/note" && echo "HOME writable"\n'
        'touch built && echo "checkout writable"\n'
        'env | grep -E "^(SECRET_KEY|DATABASE_URL|REDIS_URL)=" && echo "LEAKED"\n'
        'exit 0\n')


def sqlite_file(app_config) -> str:
    url = app_config["SQLALCHEMY_DATABASE_URI"]
    return url.removeprefix("sqlite:///") if url.startswith("sqlite") else "/nonexistent-on-postgresql"


def assert_confined(output: str, account: pwd.struct_passwd, app_dir: Path, database: str, sandboxed: bool) -> None:
    lines = output.splitlines()
    assert f"uid={account.pw_uid} gid={account.pw_gid} groups={account.pw_gid}" in lines
    assert "CapEff:\t0000000000000000" in lines  # leaving root dropped every capability
    assert f"DENIED {app_dir}/.env" in lines
    assert f"DENIED {app_dir}/instance/releasegate.db" in lines
    assert f"DENIED {database}" in lines
    assert "DENIED instance" in lines
    # Unsandboxed, the denials are the modes at work, not a broken hook; in the box, nothing of
    # the application's folder is there at all.
    assert ("anyone may read this" in lines) is not sandboxed
    assert "HOME writable" in lines and "checkout writable" in lines
    assert "LEAKED" not in lines


def test_a_hook_runs_as_hook_user_and_cannot_read_the_applications_files(
        hook_user, deployment, app_config, api, new_environment, run_jobs):
    database = sqlite_file(app_config)
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": probe(deployment, database)})
    release_id = trigger(api)
    run_jobs()
    assert state(api, release_id) == "SUCCEEDED"
    assert_confined(release(api, release_id)["hook"]["output"], hook_user, deployment, database,
                    app_config["HOOK_SANDBOX"] == "bwrap")


def test_a_release_command_runs_as_hook_user_too(hook_user, deployment, app_config, api, new_environment, run_jobs):
    database = sqlite_file(app_config)
    repo = new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n",
                            "deploy.sh": probe(deployment, database)}, release_command="bash deploy.sh")
    assert repo.exists()
    release_id = trigger(api)
    run_jobs()
    run_jobs()
    assert state(api, release_id) == "SUCCEEDED"
    assert_confined(release(api, release_id)["execution"]["output"], hook_user, deployment, database,
                    app_config["HOOK_SANDBOX"] == "bwrap")


def worker_refusal(hook_user: str, app_config) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOOK_USER": hook_user, "REDIS_URL": app_config["REDIS_URL"],
           "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"], "RELEASEGATE_ENV": "development"}
    return subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_worker_will_not_start_when_hook_user_does_not_exist(app_config):
    finished = worker_refusal("releasegate-no-such-user", app_config)
    assert finished.returncode == 2
    assert ("HOOK_USER names 'releasegate-no-such-user', but there is no such user on this machine"
            in finished.stderr)
    assert "Traceback" not in finished.stderr


def test_the_worker_will_not_start_when_hook_user_is_root(app_config):
    finished = worker_refusal("root", app_config)
    assert finished.returncode == 2
    assert "HOOK_USER names root; hooks must run as an account without privileges." in finished.stderr


def test_hook_user_is_refused_unless_the_worker_runs_as_root():
    """A forked child that left root asks for HOOK_USER, as a worker started as another user would."""
    from webapp.running.account import HookUserError, resolve

    account = pwd.getpwnam(HOOK_USER)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: leave root, try, report, exit
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            try:
                resolve(HOOK_USER)
                message = "accepted"
            except HookUserError as error:
                message = str(error)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        message = answer.read()
    os.waitpid(pid, 0)
    assert message == (f"HOOK_USER is set, but this worker does not run as root, so it cannot run hooks as "
                       f"'{HOOK_USER}': run the worker as root (docs/operations.md), or unset HOOK_USER.")


@pytest.fixture()
def hook_user_unsandboxed(app_config):
    app_config.update(HOOK_USER=HOOK_USER, HOOK_SANDBOX="none")  # in a box, a hook's parent is the box's init


def test_a_hook_running_as_hook_user_cannot_signal_the_reaper_without_a_sandbox(hook_user_unsandboxed, api,
                                                                               new_environment, run_jobs):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": (
        'if kill -0 "$PPID" 2>/dev/null; then echo "REACHED the reaper"; else echo "reaper out of reach"; fi\n'
        'exit 0\n')})
    release_id = trigger(api)
    run_jobs()
    assert state(api, release_id) == "SUCCEEDED"
    assert "reaper out of reach" in release(api, release_id)["hook"]["output"]
