"""Run one process within limits: a wall-clock timeout, an output cap with secrets masked,
a tick to report progress (and be told to stop), exactly the environment it is given.

The process is the sandbox's reaper (sandbox.py), so stopping it ends everything the command started;
its output is read until every holder of the pipe is gone."""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

MASK = "****"
KILL_GRACE = 2.0  # seconds a stopped process gets to clean up (the reaper kills its descendants)
DRAIN_GRACE = 2.0  # seconds to keep reading once the process has exited
_READ_SIZE = 65536

Tick = Callable[[str, bool], bool]
PR_SET_PDEATHSIG = 1
# Looked up here, in the worker: the child between fork and exec only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_prctl.argtypes, _prctl.restype = (ctypes.c_int, ctypes.c_ulong), ctypes.c_int


@dataclass
class RunResult:
    exit_code: int | None  # None when killed by us or never started; 128+N for signal N
    output: str
    truncated: bool = False
    timed_out: bool = False
    stopped: bool = False  # killed because on_tick asked to stop
    error: str | None = None  # a sentence when the command did not run to its end


def run_limited(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float, output_cap: int,
                on_tick: Tick | None = None, tick_seconds: float = 2.0, mask: Sequence[str] = ()) -> RunResult:
    """Run `argv` in a session of its own with exactly `env`, stdout and stderr merged and
    kept up to `output_cap` bytes. Every `tick_seconds` `on_tick(output, truncated)` is called;
    False stops the run. Strings in `mask` read as ****."""
    output = _Output(output_cap, mask)
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_dies_with(os.getpid()))
    except FileNotFoundError as error:
        if error.filename is not None and os.fspath(error.filename) == os.fspath(cwd):
            return RunResult(None, "", error="The command could not enter its working directory: it is gone.")
        return RunResult(None, "", error=f"The command '{argv[0]}' was not found; install it or give its full path.")
    except (OSError, ValueError) as error:
        return RunResult(None, "", error=f"The command could not be started: {error}.")
    with process:
        try:
            return _watch(process, output, timeout, on_tick, tick_seconds)
        except BaseException:  # a failed heartbeat, a shutdown: the run must not outlive us
            _stop(process)
            raise


def _dies_with(parent: int) -> Callable[[], None]:
    """What the child does between fork and exec: arm SIGKILL for the death of the worker, and
    give up if the worker is already gone. The sandbox's reaper arms its own only once it runs, so
    a worker killed in that moment would leave it running alone.
    One C call and a comparison: nothing that could wait on a lock another thread held at fork."""
    def arm() -> None:
        if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != parent:
            os._exit(1)

    return arm


def _watch(process: subprocess.Popen, output: _Output, timeout: float, on_tick: Tick | None,
           tick_seconds: float) -> RunResult:
    start = time.monotonic()
    deadline, next_tick, drain_until = start + timeout, start + tick_seconds, None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if drain_until is None and process.poll() is not None:
                drain_until = now + DRAIN_GRACE
            if drain_until is not None and (not selector.get_map() or now >= drain_until):
                break  # exited, and the output is read (or held by what is not ours to wait for)
            if drain_until is None and now >= deadline:
                _stop(process)
                return output.result(None, timed_out=True,
                                     error=f"The command timed out after {timeout:g} s and was killed.")
            if on_tick is not None and now >= next_tick:
                next_tick = now + tick_seconds
                if not on_tick(output.text(), output.truncated):
                    _stop(process)
                    return output.result(None, stopped=True, error="The command was stopped.")
            wake = min(drain_until or deadline, next_tick if on_tick else deadline)
            _read_or_wait(process, selector, output, max(0.0, wake - now))
    code = process.returncode
    return output.result(128 - code if code < 0 else code)


def _read_or_wait(process: subprocess.Popen, selector: selectors.BaseSelector, output: _Output,
                  seconds: float) -> None:
    """Read what comes within `seconds`; once the output is closed, wait for the exit instead."""
    if not selector.get_map():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(seconds)
        return
    for _key, _events in selector.select(min(seconds, 0.5)):  # 0.5: notice the exit soon
        data = os.read(process.stdout.fileno(), _READ_SIZE)
        if data:
            output.add(data)
        else:
            selector.unregister(process.stdout)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL to the process and its group. On SIGTERM the sandbox's reaper kills
    what it runs (bwrap, whose box ends with it) and everything left of it."""
    _signal(process.pid, signal.SIGTERM, group=False)
    try:
        process.wait(KILL_GRACE)
        return
    except subprocess.TimeoutExpired:
        pass
    _signal(process.pid, signal.SIGKILL, group=True)  # not reaped yet: the group id is still ours
    process.wait()


def _signal(pid: int, signum: int, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if group else os.kill)(pid, signum)


class _Output:
    """Output kept up to a cap (plus room to mask a secret crossing it)."""

    def __init__(self, cap: int, mask: Sequence[str]) -> None:
        self.cap = cap
        self.secrets = sorted({s.encode() for s in mask if s}, key=len, reverse=True)
        self.keep = cap + max((len(s) for s in self.secrets), default=0)
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        data = bytes(self.data).replace(b"\0", "\ufffd".encode())  # no database stores a NUL in text
        for secret in self.secrets:
            data = data.replace(secret, MASK.encode())
        if not self.truncated:
            return data.decode("utf-8", errors="replace")
        return (data[:self.cap].decode("utf-8", errors="replace")
                + f"\n[output truncated at {self.cap} bytes]\n")

    def result(self, exit_code: int | None, **flags: object) -> RunResult:
        return RunResult(exit_code, self.text(), self.truncated, **flags)
