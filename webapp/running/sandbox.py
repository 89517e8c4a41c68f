"""The box a hook or release command runs in.

By default bubblewrap: its own PID, IPC and user namespaces, no capabilities, and a root that
holds only the system's read-only directories, a fresh /tmp, /proc of its own namespace, and
the paths it is given (the workspace's checkout, payload, HOME, trusted hook folder, and the
environment's allowed host paths). Once the box is set up, when its first process exits or bwrap
is killed, the kernel ends everything in the box, `setsid` children included. The network is shared: hooks call JIRA,
commands deploy.

bwrap runs under the reaper (reaper.py), which kills it, and a box it was still setting up, when
the run is stopped or the worker dies. With HOOK_SANDBOX=none (set explicitly; the worker warns)
the command runs on the host under the reaper alone, which kills whatever it left behind.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .account import Account

MODES = ("bwrap", "none")
BWRAP = "bwrap"  # found on the worker's PATH
# What a run sees of the host, read-only. Everything else (the application, its instance
# folder and database, the repo cache, /home, /root, /var, /run, /srv, /opt) is not there.
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Inside those, the application's own configuration (docs/operations.md keeps it here): covered by
# an empty folder in every box.
HIDDEN = ("/etc/releasegate",)
REAPER = Path(__file__).with_name("reaper.py")
PROBE_SECONDS = 30  # how long check() waits for bwrap to start a box and end
NO_BWRAP = ("Hooks run in a bubblewrap sandbox, but bwrap is not installed: install it (Debian: apt-get "
            "install bubblewrap), or set HOOK_SANDBOX=none to run hooks unsandboxed (docs/operations.md says "
            "what that exposes).")


@dataclass(frozen=True)
class Bind:
    path: str  # absolute; the same path inside the box as on the host
    writable: bool = False


@dataclass(frozen=True)
class Launch:
    """How to start a command in the box: the argv to run and the environment the launched
    process itself gets on the host."""

    argv: list[str]
    env: dict[str, str] | None = None


# Variables the host's loader and C library act on: they would act on bwrap or the reaper, on the
# host, before any box exists. They are set inside the box (or for the command alone) instead.
HOST_UNSAFE = ("LD_", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "MALLOC_", "GLIBC_TUNABLES")


def launch(argv: list[str], *, cwd: Path, binds: Sequence[Bind], mode: str, account: Account | None,
           env: dict[str, str] | None = None) -> Launch:
    """The process that runs `argv` boxed, with `cwd` as its working directory and `env` as the
    command's environment.

    Always the reaper, as the worker's user, out of the command's reach: it switches what it runs
    to `account`, and kills whatever is left of it when it ends, is stopped or the worker dies. In
    the sandbox what it runs is bwrap, whose box arms its own parent-death signal only once it is
    set up: a worker killed before then leaves the box to the reaper, never to itself."""
    env = env or {}
    unsafe = {name: value for name, value in env.items() if name.startswith(HOST_UNSAFE)}
    host_env = {name: value for name, value in env.items() if name not in unsafe}
    switch = ["--account", ",".join(map(str, _flat(account)))] if account else []
    if mode == "none":
        extra = [arg for name, value in unsafe.items() for arg in ("--setenv", f"{name}={value}")]
        command = argv
    else:
        # bwrap runs as the hook account: inside the box it can be no one else, and a box that
        # root starts keeps root's access to the files it sees.
        extra, command = [], _bwrap_argv(argv, cwd, binds, unsafe)
    return Launch([sys.executable, "-I", "-S", str(REAPER), *switch, *extra, "--", *command], host_env)


def _bwrap_argv(argv: list[str], cwd: Path, binds: Sequence[Bind], unsafe: dict[str, str]) -> list[str]:
    """bwrap's command line that runs `argv` in a box, in `cwd`, with `unsafe` set inside it."""
    extra = [arg for name, value in unsafe.items() for arg in ("--setenv", name, value)]
    return [shutil.which(BWRAP) or BWRAP, *bwrap_options(binds), *extra, "--chdir", str(cwd), "--", *argv]


def bwrap_options(binds: Sequence[Bind]) -> list[str]:
    options = ["--die-with-parent", "--new-session", "--cap-drop", "ALL",
               "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    options += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for directory in SYSTEM_DIRS:
        if os.path.islink(directory):  # merged /usr: /bin -> usr/bin
            options += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            options += ["--ro-bind", directory, directory]
    options += [arg for hidden in HIDDEN if os.path.isdir(hidden) for arg in ("--tmpfs", hidden)]
    resolver = os.path.realpath("/etc/resolv.conf")  # systemd-resolved keeps it under /run
    if os.path.exists(resolver) and not _under(resolver, SYSTEM_DIRS):
        options += ["--ro-bind", resolver, resolver]
    for bind in binds:
        options += ["--bind" if bind.writable else "--ro-bind", bind.path, bind.path]
    return options


def check(mode: str, account: Account | None) -> str | None:
    """None when a box can be started here, else a sentence saying what to install or set."""
    if mode not in MODES:
        return f"HOOK_SANDBOX must be 'bwrap' (the default) or 'none', not {mode!r}."
    if not REAPER.is_file():  # every run starts under it; python exits 2 on a missing script
        return f"Every run starts under {REAPER}, which is missing: reinstall."
    if mode == "none":
        return None
    if shutil.which(BWRAP) is None:
        return NO_BWRAP
    # the bwrap launch() would run, as the account it would run it as (without the reaper: a box
    # that only runs `true` has nothing to outlive the worker with)
    probe = _bwrap_argv(["true"], Path("/"), (), {})
    try:
        proc = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, env={}, cwd="/",
                              timeout=PROBE_SECONDS, **popen_user(account))
    except FileNotFoundError:
        return NO_BWRAP
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"The bubblewrap sandbox could not be started ({error}); see docs/operations.md."
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no reason given"]
        return (f"bubblewrap cannot start a sandbox on this machine ({reason[0]}): allow unprivileged "
                "user namespaces (sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0), "
                "or set HOOK_SANDBOX=none to run hooks unsandboxed (docs/operations.md).")
    return None


def exposed(paths: Sequence[str]) -> list[str]:
    """Those of `paths` (the application's own files) that a box would see."""
    return [path for path in paths if path and _under(os.path.realpath(path), SYSTEM_DIRS)]


def popen_user(account: Account | None) -> dict:
    """subprocess.Popen's arguments that start a process as `account`."""
    if account is None:
        return {}
    uid, gid, groups = account
    return {"user": uid, "group": gid, "extra_groups": groups}


def _flat(account: Account) -> list[int]:
    uid, gid, groups = account
    return [uid, gid, *groups]


def _under(path: str, roots: Sequence[str]) -> bool:
    """Whether `path` (resolved) is one of `roots` (SYSTEM_DIRS, never "/") or inside one, as resolved."""
    real_roots = {os.path.realpath(root) for root in roots if os.path.exists(root)}
    return any(path == root or path.startswith(root + "/") for root in real_roots)
