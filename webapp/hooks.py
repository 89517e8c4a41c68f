"""Check a pre-release hook before it runs, build the clean environment of a hook or
release command, and run a hook through supervise.run_limited."""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from .supervise import DEFAULT_PATH, Account, RunResult, Tick, run_limited

# Sources that passed the syntax check, by digest: the same hook is checked once per process,
# not once per release (`bash -n` is a process of its own).
_PASSED: collections.OrderedDict[tuple[str, bytes], None] = collections.OrderedDict()
_PASSED_SIZE = 256
_passed_lock = threading.Lock()


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
    key = (kind, hashlib.sha256(source).digest())
    with _passed_lock:
        if key in _PASSED:
            return None
    problem = _python_syntax_error(source, script) if kind == "py" else _bash_syntax_error(script)
    if problem is None:
        with _passed_lock:
            _PASSED[key] = None
            if len(_PASSED) > _PASSED_SIZE:
                _PASSED.popitem(last=False)
    return problem


def _python_syntax_error(source: bytes, script: Path) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escapes are not our concern
            compile(source, str(script), "exec", dont_inherit=True)
    except SyntaxError as exc:
        return (f"The hook {Path(script).name} has a Python syntax error at line "
                f"{exc.lineno}: {exc.msg}; fix it and trigger the release again.")
    except ValueError as exc:  # e.g. a NUL byte in the source
        return f"The hook {Path(script).name} is not valid Python source: {exc}."
    return None


def _bash_syntax_error(script: Path) -> str | None:
    bash = shutil.which("bash") or "/bin/bash"
    proc = subprocess.run([bash, "-n", str(script)], stdin=subprocess.DEVNULL,
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
    entries = [p for p in os.environ.get("PATH", "").split(os.pathsep)
               if p and os.path.normpath(p) not in venv_bins]
    return os.pathsep.join(entries) or DEFAULT_PATH


def run_hook(script: Path, kind: str, payload_path: Path, *, cwd: Path,
             env: dict[str, str], timeout: float, output_cap: int,
             python: str = "python3", on_tick: Tick | None = None,
             tick_seconds: float = 2.0, mask: Sequence[str] = (), user: Account | None = None,
             on_start: Callable[[], None] | None = None) -> RunResult:
    """Run a hook as `python3 <script> <payload>` or `bash <script> <payload>` (as `user` if given)."""
    if kind not in ("py", "sh"):
        raise ValueError(f"unknown hook kind {kind!r}")
    interpreter = python if kind == "py" else "bash"
    argv = [interpreter, str(Path(script).resolve()), str(Path(payload_path).resolve())]
    return run_limited(argv, cwd=cwd, env=env, timeout=timeout, output_cap=output_cap,
                       on_tick=on_tick, tick_seconds=tick_seconds, mask=mask, user=user, on_start=on_start)
