"""The pre-release hook: the trusted hook folder taken from the hook ref, how it differs from
the commit under review, the check before it runs, and the clean environment of a run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import git

HOOK_DIR = "pre_release_hooks"
HOOK_NAMES = (("pre_release_hook.py", "py"), ("pre_release_hook.sh", "sh"))  # .py wins
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class TrustedHook:
    """The hook folder at the hook ref, written into `folder` outside the checkout."""

    path: str  # repo-relative path of the hook script, e.g. shop/pre_release_hooks/pre_release_hook.py
    kind: str  # "py" or "sh"
    script: Path  # where it was placed


def hook_folder(project: str) -> str:
    return f"{project}/{HOOK_DIR}"


def place_trusted_hook(git_dir: Path, hook_ref_commit: str, project: str, dest: Path) -> TrustedHook | None:
    """Write the whole hook folder of the hook ref's commit into the empty directory `dest` and
    return its hook; None when that commit has none. git.RepoError when the folder is unusable:
    a link that leaves it, or no regular file where the hook should be."""
    folder = hook_folder(project)
    entries = git.list_folder(git_dir, hook_ref_commit, folder)
    if not entries:
        return None
    for path, entry in entries.items():
        if not (entry.is_file or entry.is_symlink):
            raise git.RepoError(f"The hook folder at the hook ref holds {path}, which is not a file; "
                                f"keep only files in {folder}/.")
    git.checkout(git_dir, hook_ref_commit, dest, paths=(folder,))
    inside = os.path.realpath(dest / folder)
    for path, entry in entries.items():  # judged by where each link really leads, chains included
        target = os.path.realpath(dest / path)
        if entry.is_symlink and target != inside and not target.startswith(inside + os.sep):
            raise git.RepoError(f"The hook folder at the hook ref holds {path}, a symlink that leaves "
                                f"{folder}/; commit the file itself there.")
    for name, kind in HOOK_NAMES:
        script = dest / folder / name
        if f"{folder}/{name}" in entries:
            if not script.is_file():
                raise git.RepoError(f"The pre-release hook {folder}/{name} at the hook ref is not a file; "
                                    "commit the script itself at that path.")
            return TrustedHook(path=f"{folder}/{name}", kind=kind, script=script)
    return None


def folder_differences(git_dir: Path, commit: str, hook_ref_commit: str, project: str) -> list[str]:
    """Every path at or under the hook folder whose entry differs between the release's commit
    and the hook ref (added, changed, removed, or turned into a link), each with what happened."""
    folder = hook_folder(project)
    theirs = git.list_folder(git_dir, commit, folder)
    ours = git.list_folder(git_dir, hook_ref_commit, folder)
    differences = []
    for path in sorted(theirs.keys() | ours.keys()):
        mine, other = ours.get(path), theirs.get(path)
        if mine == other:
            continue
        if mine is None:
            what = "a symlink added" if other.is_symlink else "added"
        elif other is None:
            what = "removed"
        else:
            what = "made a symlink" if other.is_symlink and not mine.is_symlink else "changed"
        shown = path.encode(errors="surrogateescape").decode(errors="backslashreplace")  # storable
        differences.append(f"{shown} ({what})")
    return differences


def hook_argv(script: Path, kind: str, payload: Path, python: str) -> list[str]:
    """`python3 -E -s <hook> <payload>` (no PYTHON* variables, no user site: only the trusted
    folder and the system are importable) or `bash <hook> <payload>`. The interpreter is the
    system's, found on the system PATH alone: a PATH the commit could add to never chooses it."""
    if kind == "py":
        return [_system_program(python), "-E", "-s", str(script), str(payload)]
    return [_system_program("bash"), str(script), str(payload)]


def _system_program(name: str) -> str:
    # which() looks only at a name that holds a folder (an absolute one, as configured) itself
    return shutil.which(name, path=DEFAULT_PATH) or name


# Variables that change how bash, python or the loader start, before the trusted hook's first
# line: an environment's variables never set them for a hook (its release command may).
_STARTUP_VARIABLES = ("BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "BASH_FUNC_", "LD_", "GCONV_PATH", "PYTHON")


def hook_variables(variables: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in variables.items() if not name.startswith(_STARTUP_VARIABLES)}


def preflight(script: Path, kind: str) -> str | None:
    """None when `script` can run as a `kind` ("py" or "sh") hook, else the reason.

    python3 and bash both exit 2 (our "needs approval") on a missing file or a
    syntax error, so a hook must pass this check before it runs.
    """
    name = Path(script).name
    if kind not in ("py", "sh"):
        return f"The hook {name} has an unknown kind '{kind}'; name it .py or .sh."
    try:
        if not os.path.isfile(script):
            if os.path.lexists(script):
                return f"The hook {name} is not a regular file; commit the script there."
            return f"The hook {name} does not exist; add it to the repository."
        with open(script, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        return f"The hook {name} cannot be read ({exc.strerror}); check its permissions."
    return _python_syntax_error(source, script) if kind == "py" else _bash_syntax_error(script)


def _python_syntax_error(source: bytes, script: Path) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escapes are not our concern
            compile(source, Path(script).name, "exec", dont_inherit=True)  # the name goes only into exc.filename
    except SyntaxError as exc:
        return (f"The hook {Path(script).name} has a Python syntax error at line "
                f"{exc.lineno}: {exc.msg}; fix it and trigger the release again.")
    except ValueError as exc:  # e.g. a NUL byte in the source
        return f"The hook {Path(script).name} is not valid Python source: {exc}."
    return None


def _bash_syntax_error(script: Path) -> str | None:
    proc = subprocess.run(["bash", "-n", str(script)], stdin=subprocess.DEVNULL,
                          capture_output=True, env={"PATH": DEFAULT_PATH, "LANG": "C"})
    if proc.returncode == 0:
        return None
    message = proc.stderr.decode(errors="replace").strip()[:1000]
    return (f"The hook {Path(script).name} has a bash syntax error: {message}; fix it "
            "and trigger the release again.")


def hook_environment(*, release_id: int, project: str, environment: str,
                     release_stream: str, home: Path,
                     variables: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a hook or release command (SPEC §4 allowlist).

    `variables` are added and may set PATH or LANG, never the release's own names.
    """
    env = {"PATH": _path_without_virtualenv(), "LANG": os.environ.get("LANG") or "C.UTF-8"}
    env.update(variables or {})
    env.update({
        "HOME": str(home),
        "RELEASE_ID": str(release_id),
        "PROJECT_NAME": project,
        "ENVIRONMENT_NAME": environment,
        "RELEASE_STREAM": release_stream,
    })
    return env


def _path_without_virtualenv() -> str:
    # `python3` must find the system interpreter, not the application's venv.
    venv_bins = {os.path.join(sys.prefix, "bin")} if sys.prefix != sys.base_prefix else set()
    if os.environ.get("VIRTUAL_ENV"):
        venv_bins.add(os.path.join(os.environ["VIRTUAL_ENV"], "bin"))
    # Relative entries would search the checkout.
    entries = [p for p in os.environ.get("PATH", "").split(os.pathsep)
               if os.path.isabs(p) and os.path.normpath(p) not in venv_bins]
    return os.pathsep.join(entries) or DEFAULT_PATH
