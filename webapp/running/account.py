"""HOOK_USER: run hooks and release commands as another operating-system account.

The sandbox already hides the application's files; a separate account adds that a hook which
got out of the box still could not read them (given the file modes docs/operations.md asks
for), and that a root worker's hooks do not run as root. Each workspace is handed to that account before the
command starts, and the command runs with that account's uid, gid and groups only.
"""
from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

Account = tuple[int, int, list[int]]  # uid, gid, supplementary groups


class HookUserError(Exception):
    pass


def resolve(name: str) -> Account:
    """The uid, gid and groups of `name`; HookUserError when this worker cannot become it."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise HookUserError(f"HOOK_USER names '{name}', but there is no such user on this machine: "
                            f"create it (useradd --system --no-create-home {name}) or fix HOOK_USER.") from None
    if entry.pw_uid == 0:
        raise HookUserError("HOOK_USER names root; hooks must run as an account without privileges.")
    if os.geteuid() != 0:
        # Root, because leaving root is what drops every capability: a worker switching users
        # by capabilities would pass them on to the hook, and could not kill its processes.
        raise HookUserError(f"HOOK_USER is set, but this worker does not run as root, so it cannot run hooks "
                            f"as '{name}': run the worker as root (docs/operations.md), or unset HOOK_USER.")
    groups = sorted(set(os.getgrouplist(name, entry.pw_gid)))
    return entry.pw_uid, entry.pw_gid, groups


def hand_over(root: Path, account: Account) -> None:
    """Make `root` and everything in it belong to `account` (links themselves, never their targets:
    chown -h; -R without -L or -H follows none)."""
    uid, gid, _groups = account
    subprocess.run(["chown", "-hR", f"{uid}:{gid}", "--", str(root)], check=True, stdin=subprocess.DEVNULL,
                   capture_output=True)
