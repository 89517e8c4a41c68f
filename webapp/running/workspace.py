"""A run's workspace: its folders (the checkout, the trusted hook folder, HOME, the payload, the
verdict), what the sandbox binds of them, and their removal, including what a killed worker
left behind (sweep_workspaces, at the worker's start)."""
from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import WORK_ROOT, sandbox


@dataclass(frozen=True)
class Workspace:
    """One run's directory: checkout/ (the commit), hooks/ (the trusted hook folder), home/ and
    payload.json. Its name starts with the worker's pid, so sweep_workspaces() can remove what a
    killed worker left behind."""

    root: Path

    @property
    def checkout(self) -> Path:
        return self.root / "checkout"

    @property
    def hooks(self) -> Path:
        return self.root / "hooks"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def payload(self) -> Path:
        return self.root / "payload.json"

    @property
    def verdict(self) -> Path:
        """Where a hook may write its verdict ($RELEASE_VERDICT), in a folder of its own."""
        return self.root / "verdict" / "verdict.json"

    def binds(self, *, hook_folder: bool) -> list[sandbox.Bind]:
        """What a run sees of the workspace: the checkout and its HOME read-write, the payload
        (and for a hook, the trusted folder) read-only."""
        binds = [sandbox.Bind(str(self.checkout), writable=True), sandbox.Bind(str(self.home), writable=True),
                 sandbox.Bind(str(self.payload))]
        if hook_folder:
            binds += [sandbox.Bind(str(self.hooks)), sandbox.Bind(str(self.verdict.parent), writable=True)]
        return binds


@contextmanager
def workspace(release_id: int) -> Iterator[Workspace]:
    """A new workspace for one run of `release_id`, removed when the run is over."""
    check_work_root()
    space = Workspace(Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{release_id}-", dir=WORK_ROOT)))
    space.home.mkdir()
    space.hooks.mkdir()
    space.verdict.parent.mkdir()
    try:
        yield space
    finally:
        remove(space.root)


def check_work_root() -> None:
    """WORK_ROOT made, or found as this worker's own real folder: in a shared /tmp another local
    user could have made it first, or put a link there."""
    WORK_ROOT.mkdir(mode=0o711, exist_ok=True)  # others may enter (a HOOK_USER their own), not list
    info = os.lstat(WORK_ROOT)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise RuntimeError(f"{WORK_ROOT} is not a folder of this worker's own: remove it, or set TMPDIR elsewhere.")
    if stat.S_IMODE(info.st_mode) != 0o711:
        os.chmod(WORK_ROOT, 0o711)


def remove(path: Path) -> None:
    """rm -rf: shutil.rmtree recurses in Python and gives up on a tree a commit made deep enough."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], stdin=subprocess.DEVNULL,
                   capture_output=True)


def sweep_workspaces() -> list[Path]:
    """Remove workspaces whose worker process is gone (killed mid-run); returns them."""
    removed = []
    for directory in WORK_ROOT.glob("*-*-*") if WORK_ROOT.is_dir() else ():
        pid = directory.name.split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            remove(directory)
            removed.append(directory)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return True
