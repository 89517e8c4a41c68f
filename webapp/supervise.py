"""Run a command within limits: its own process group killed as a whole, a wall-clock
timeout, an output cap with secrets masked, and exactly the environment it is given.

The supervisor that watches the command is forked by the spawner (spawner.py), a small
process started once from the thread that runs commands; other threads fork their own."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import spawner

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MASK = "****"
KILL_GRACE = 2.0  # seconds the supervisor gets to clean up after being told to stop
DRAIN_GRACE = 0.5  # seconds to keep reading output once the command has exited
SPAWNER_TIMEOUT = 10.0  # seconds the spawner may take to start or to answer a request
_READ_SIZE = 65536
log = logging.getLogger(__name__)

Tick = Callable[[str, bool], bool]
Account = tuple[int, int, list[int]]  # uid, gid, supplementary groups


@dataclass
class RunResult:
    exit_code: int | None  # None when killed by us or never started; -N for signal N
    output: str
    truncated: bool = False
    timed_out: bool = False
    stopped: bool = False  # killed because on_tick asked to stop
    error: str | None = None  # a sentence when the command did not run to its end


def run_limited(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                output_cap: int, on_tick: Tick | None = None, tick_seconds: float = 2.0,
                mask: Sequence[str] = (), user: Account | None = None,
                on_start: Callable[[], None] | None = None) -> RunResult:
    """Run `argv` in its own process group with exactly `env`, within limits.

    stdout and stderr are merged and kept up to `output_cap` bytes. Every
    `tick_seconds` `on_tick(output, truncated)` is called; False stops the run.
    On timeout or stop the whole group is killed. Strings in `mask` read as ****.
    With `user`, the command runs as that account (its own groups only); the supervisor
    stays with the caller, out of the command's reach. `on_start()` is called once the
    command is on its way, before the wait for it begins.

    Call this from the thread that lives as long as the run (the worker's main
    thread): the command is killed when that thread dies (PR_SET_PDEATHSIG). In the main
    thread the spawner (started on first use, or by start_spawner()) forks the supervisor.
    """
    exe = argv[0] if os.sep in argv[0] else shutil.which(
        argv[0], path=env.get("PATH", DEFAULT_PATH))
    if exe is None:
        return RunResult(None, "", error=f"The command '{argv[0]}' was not found on the "
                                         "PATH; install it or give its full path.")
    _reap_exited()
    output = _Output(output_cap, mask)
    try:
        child = _Supervised(exe, argv, env, cwd, user)
    except OSError as exc:
        return RunResult(None, "", error=f"The command could not be started: {exc}.")
    try:
        if on_start is not None:
            on_start()
        result = _watch(child, output, timeout, on_tick, tick_seconds)
    finally:
        child.close()
    return result


def _watch(child: _Supervised, output: _Output, timeout: float,
           on_tick: Tick | None, tick_seconds: float) -> RunResult:
    start = time.monotonic()
    deadline, next_tick, drain_until = start + timeout, start + tick_seconds, None
    while child.reading:
        now = time.monotonic()
        if child.finished and drain_until is None:
            drain_until = now + DRAIN_GRACE  # an escaped process may hold the pipe
        if drain_until is not None and now >= drain_until:
            break
        if drain_until is None and now >= deadline:
            child.stop()
            return output.result(None, timed_out=True, error="The command timed out "
                                 f"after {timeout:g} s and was killed.")
        if on_tick is not None and now >= next_tick:
            next_tick = now + tick_seconds
            if not on_tick(output.text(), output.truncated):
                child.stop()
                return output.result(None, stopped=True, error="The command was stopped.")
        wake = min(drain_until or deadline, next_tick if on_tick else deadline)
        child.pump(wake - now, output)
    return output.result(child.exit_code, error=child.error)


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
        data = bytes(self.data)
        for secret in self.secrets:
            data = data.replace(secret, MASK.encode())
        if not self.truncated:
            return data.decode("utf-8", errors="replace")
        return (data[:self.cap].decode("utf-8", errors="replace")
                + f"\n[output truncated at {self.cap} bytes]\n")

    def result(self, exit_code: int | None, **flags: object) -> RunResult:
        return RunResult(exit_code, self.text(), self.truncated, **flags)


class _Supervised:
    """The parent's side of a supervisor process and the command it runs (the status pipe
    protocol is in spawner.supervise)."""

    def __init__(self, exe: str, argv: list[str], env: dict[str, str], cwd: Path,
                 user: Account | None = None) -> None:
        spawn = (os.fsencode(exe), [os.fsencode(a) for a in argv], _encode_env(env),
                 os.fsencode(cwd), user)
        if any(b"\0" in arg for arg in spawn[1]) or b"\0" in spawn[3]:
            raise ValueError("a command argument contains a NUL byte")
        self.out_r, out_w = _pipe()
        self.status_r, status_w = _pipe()
        self.pidfd: int | None = None
        self.forked = False  # our own child (the fallback), not the spawner's
        try:
            helper = _spawner_for(user)
            if helper is not None:
                self.pid, self.pidfd = helper.spawn(spawn, out_w, status_w)
            else:
                self.pid, self.forked = _fork_supervisor(spawn, out_w, status_w), True
        except BaseException:
            os.close(self.out_r)
            os.close(self.status_r)
            raise
        finally:
            os.close(out_w)
            os.close(status_w)
        self.poller = select.poll()
        for fd in (self.out_r, self.status_r):
            self.poller.register(fd, select.POLLIN)
        self.open = {self.out_r, self.status_r}
        self.group: int | None = None
        self.exit_code: int | None = None
        self.error: str | None = None
        self.finished = False
        self.stopped = False
        self._status = b""

    @property
    def reading(self) -> bool:
        # Once the exit status is in, the supervisor's own exit is not waited for.
        return self.out_r in self.open or (self.status_r in self.open and not self.finished)

    def pump(self, timeout: float, output: _Output) -> None:
        """Read what is ready within `timeout` seconds."""
        for fd, _ in self.poller.poll(max(0, int(timeout * 1000) + 1)):
            data = os.read(fd, _READ_SIZE)
            if not data:
                self._eof(fd)
            elif fd == self.out_r:
                output.add(data)
            else:
                self._status += data
                self._parse_status()

    def _eof(self, fd: int) -> None:
        self.poller.unregister(fd)
        self.open.discard(fd)
        if fd == self.status_r and not self.finished:
            self.finished = True  # the supervisor died without a word
            self.error = ("The command's supervisor was killed before it reported an exit "
                          "status; treat the run as failed.")

    def _parse_status(self) -> None:
        *lines, self._status = self._status.split(b"\n")
        for line in lines:
            word, *args = line.decode().split()
            if word == "started":
                self.group = int(args[0])
                continue
            self.finished = True
            if word == "exit":
                self.exit_code = int(args[0])
            elif word == "error":
                reason = os.strerror(int(args[0]))
                what = "enter the working directory" if args[1] == "cwd" else "start"
                self.error = f"The command could not {what}: {reason}."
            else:
                self.error = "The command's supervisor failed; treat the run as failed."

    def stop(self) -> None:
        """Kill the command's group (through the supervisor when it answers)."""
        if self.stopped:
            return
        self.stopped = True
        self._signal_supervisor(signal.SIGTERM)
        if not self._supervisor_gone_within(KILL_GRACE):
            if self.group:
                _signal(os.killpg, self.group, signal.SIGKILL)
            self._signal_supervisor(signal.SIGKILL)

    def _signal_supervisor(self, signum: int) -> None:
        # The spawner reaps its children at once: a pidfd cannot name a recycled pid.
        if self.pidfd is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(self.pidfd, signum)
        else:
            _signal(os.kill, self.pid, signum)

    def _supervisor_gone_within(self, seconds: float) -> bool:
        until = time.monotonic() + seconds
        poller = select.poll()
        poller.register(self.status_r, select.POLLIN)
        while self.status_r in self.open:
            left = until - time.monotonic()
            if left <= 0:
                return False
            if poller.poll(int(left * 1000) + 1) and not os.read(self.status_r, _READ_SIZE):
                self._eof(self.status_r)
        return True

    def close(self) -> None:
        if not self.finished:
            self.stop()
        for fd in (self.out_r, self.status_r):
            os.close(fd)
        if self.pidfd is not None:
            os.close(self.pidfd)
        if self.forked:
            _exiting.add(self.pid)  # it has reported and is exiting: reap it without waiting
        _reap_exited()


_exiting: set[int] = set()


def _reap_exited() -> None:
    """Reap supervisors that have exited; tearing one down takes a few ms we need not wait for."""
    for pid in list(_exiting):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # reaped elsewhere, or SIGCHLD is ignored here
        if done:
            _exiting.discard(pid)


def _signal(send: Callable[[int, int], None], pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        send(pid, signum)


def _pipe() -> tuple[int, int]:
    """A close-on-exec pipe whose ends are above 0-2 even if those are closed."""
    ends = []
    for fd in os.pipe():
        if fd <= 2:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = high
        ends.append(fd)
    return ends[0], ends[1]


def _encode_env(env: dict[str, str]) -> dict[bytes, bytes]:
    encoded = {}
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"environment variable {key!r} cannot be passed to a command")
        encoded[os.fsencode(key)] = os.fsencode(value)
    return encoded


# -- starting supervisors ---------------------------------------------------------------


def _fork_supervisor(spawn: spawner.Spawn, out_w: int, status_w: int) -> int:
    """The fallback: fork the supervisor from this process (what the spawner saves)."""
    parent, maxfd = os.getpid(), spawner.max_fd()
    # Blocked across fork so a stop cannot reach the supervisor before its handler.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        pid = os.fork()
        if pid == 0:
            spawner.supervise(spawn, out_w, status_w, parent, maxfd)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return pid


class SpawnerError(OSError):
    pass


class _Spawner:
    """The worker's side of the spawner process: one request at a time, from one thread."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # A new session: a terminal's signals are for the worker. No environment: the
            # spawner and its supervisors hold none of the application's settings.
            self.process = subprocess.Popen(
                [sys.executable, "-S", "-I", spawner.__file__, str(theirs.fileno()), str(os.getpid())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env={}, start_new_session=True)
        finally:
            theirs.close()
        self.socket, self.owner = ours, os.getpid()
        ours.settimeout(SPAWNER_TIMEOUT)
        try:
            hello = spawner.receive(ours, max_fds=0)
        except OSError as exc:
            self.close()
            raise SpawnerError(f"the spawner did not start: {exc}") from None
        if hello is None or hello[0][0] != "ready":
            self.close()
            raise SpawnerError("the spawner did not start")
        self.can_switch_user = spawner.can_switch_user(hello[0][1])

    @property
    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def spawn(self, spec: spawner.Spawn, out_w: int, status_w: int) -> tuple[int, int | None]:
        """(supervisor pid, its pidfd or None). Raises SpawnerError when the spawner failed us;
        the command may then have started and been killed with its supervisor, so the run fails."""
        try:
            spawner.send(self.socket, spec, [out_w, status_w])
            answer = spawner.receive(self.socket, max_fds=1)
        except OSError as exc:
            self.close()
            raise SpawnerError(f"the spawner stopped answering ({exc})") from None
        if answer is None:
            self.close()
            raise SpawnerError("the spawner exited")
        (word, value), fds = answer
        if word != "ok":
            raise OSError(value, os.strerror(value))
        return value, (fds[0] if fds else None)

    def close(self) -> None:
        """Stop the spawner (supervisors it forked die with it)."""
        self.socket.close()
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


_spawner: list[_Spawner] = []
_spawner_lock = threading.Lock()
_spawner_failed_at = [float("-inf")]
RETRY_SPAWNER_SECONDS = 60.0


def start_spawner() -> bool:
    """Start the spawner now (the worker does, at boot, from its main thread); False when it cannot
    run here, and supervisors are then forked from this process."""
    return _spawner_for(None) is not None


def _spawner_for(user: Account | None) -> _Spawner | None:
    """The spawner, when this thread may use it. Its parent-death signal follows the thread that
    started it, so only the main thread starts and uses one; a dead one is replaced first."""
    if threading.current_thread() is not threading.main_thread():
        return None
    with _spawner_lock:
        if _spawner and not _spawner[0].alive:
            stale = _spawner.pop()
            if stale.owner == os.getpid():
                stale.close()
        if not _spawner:
            if time.monotonic() - _spawner_failed_at[0] < RETRY_SPAWNER_SECONDS:
                return None
            try:
                _spawner.append(_Spawner())
            except (OSError, ValueError) as exc:
                _spawner_failed_at[0] = time.monotonic()
                log.warning("supervisors are forked from this process for a while: %s", exc)
                return None
        helper = _spawner[0]
    if user is not None and not helper.can_switch_user:
        return None  # the spawner lacks CAP_SETUID/CAP_SETGID the worker has: fork it here
    return helper
