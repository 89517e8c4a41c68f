"""Run a command within limits: its own process group killed as a whole, a wall-clock
timeout, an output cap with secrets masked, and exactly the environment it is given."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MASK = "****"
KILL_GRACE = 2.0  # seconds the supervisor gets to clean up after being told to stop
DRAIN_GRACE = 0.5  # seconds to keep reading output once the command has exited
_READ_SIZE = 65536
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Reset for the command: Python ignores SIGPIPE and SIGXFSZ, a daemon may ignore more.
_DEFAULT_SIGNALS = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ,
    signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGCHLD,
)
try:  # resolved at import so the forked supervisor only makes the call
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal
    _prctl = None

Tick = Callable[[str, bool], bool]
Account = tuple[int, int, list[int]]  # uid, gid, supplementary groups
Spawn = tuple[bytes, list[bytes], dict[bytes, bytes], bytes, Account | None]


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
                mask: Sequence[str] = (), user: Account | None = None) -> RunResult:
    """Run `argv` in its own process group with exactly `env`, within limits.

    stdout and stderr are merged and kept up to `output_cap` bytes. Every
    `tick_seconds` `on_tick(output, truncated)` is called; False stops the run.
    On timeout or stop the whole group is killed. Strings in `mask` read as ****.
    With `user`, the command runs as that account (its own groups only); the supervisor
    stays with the caller, out of the command's reach.

    Call this from the thread that lives as long as the run (the worker's main
    thread): the command is killed when that thread dies (PR_SET_PDEATHSIG).
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
    """The parent's side of a supervisor process and the command it runs.

    Status pipe protocol, one line each: `started <pid>`, then `exit <code>`,
    `error <errno> <cwd|exec>`, `stopped` or `failed`.
    """

    def __init__(self, exe: str, argv: list[str], env: dict[str, str], cwd: Path,
                 user: Account | None = None) -> None:
        spawn = (os.fsencode(exe), [os.fsencode(a) for a in argv], _encode_env(env),
                 os.fsencode(cwd), user)
        if any(b"\0" in arg for arg in spawn[1]) or b"\0" in spawn[3]:
            raise ValueError("a command argument contains a NUL byte")
        self.out_r, out_w = _pipe()
        self.status_r, status_w = _pipe()
        parent, maxfd = os.getpid(), _max_fd()
        # Blocked across fork so a stop cannot reach the supervisor before its handler.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            self.pid = os.fork()
            if self.pid == 0:
                _supervise(spawn, out_w, status_w, parent, maxfd)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
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
        _signal(os.kill, self.pid, signal.SIGTERM)
        if not self._supervisor_gone_within(KILL_GRACE):
            if self.group:
                _signal(os.killpg, self.group, signal.SIGKILL)
            _signal(os.kill, self.pid, signal.SIGKILL)

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


def _max_fd() -> int:
    try:
        return max(os.sysconf("SC_OPEN_MAX"), 256)
    except (OSError, ValueError):
        return 65536


def _encode_env(env: dict[str, str]) -> dict[bytes, bytes]:
    encoded = {}
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"environment variable {key!r} cannot be passed to a command")
        encoded[os.fsencode(key)] = os.fsencode(value)
    return encoded


# -- the supervisor: runs in the forked child, os-level calls only -------------


class _Stop(Exception):
    pass


def _supervise(spawn: Spawn,
               out_w: int, status_w: int, parent: int, maxfd: int) -> None:
    """Never returns. Runs the command in its own group and kills that group when
    the command exits, when told to stop (SIGTERM) or when the parent dies."""
    spawned = [0]

    def on_term(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough
        if spawned[0]:
            os.killpg(spawned[0], signal.SIGKILL)
        raise _Stop

    try:
        status = b"failed\n"
        try:
            signal.signal(signal.SIGTERM, on_term)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            status = _spawn_and_wait(spawn, out_w, status_w, parent, maxfd, spawned)
        except _Stop:
            status = b"stopped\n"
        except BaseException:
            pass
        for _ in range(2):  # a stop can land once more, in the middle of this
            try:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                if spawned[0]:
                    _kill_and_reap(spawned[0])
                os.write(status_w, status)
                break
            except _Stop:
                status = b"stopped\n"
    finally:
        os._exit(0)


def _spawn_and_wait(spawn: Spawn, out_w: int, status_w: int, parent: int, maxfd: int,
                    spawned: list[int]) -> bytes:
    exe, argv, env, cwd, user = spawn
    os.setsid()
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of the command come to us
    if os.getppid() != parent:  # the parent died before PDEATHSIG was armed
        return b"failed\n"
    _wire_fds(out_w, status_w, maxfd)
    stage = b"cwd"
    try:
        os.chdir(cwd)
        stage = b"exec"
        if user is None:
            spawned[0] = os.posix_spawn(exe, argv, env, setpgroup=0, setsigmask=(),
                                        setsigdef=_DEFAULT_SIGNALS)
        else:
            spawned[0] = _spawn_as(user, exe, argv, env)
    except OSError as exc:
        return b"error %d %s\n" % (exc.errno or errno.EIO, stage)
    os.write(status_w, b"started %d\n" % spawned[0])
    os.dup2(0, 1)  # let go of the output pipe: EOF must depend on the group alone
    os.dup2(0, 2)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # pid now known
    info = os.waitid(os.P_PID, spawned[0], os.WEXITED | os.WNOWAIT)
    code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    return b"exit %d\n" % code


def _spawn_as(user: Account, exe: bytes, argv: list[bytes], env: dict[bytes, bytes]) -> int:
    """posix_spawn with a change of user, which it cannot do: fork, drop to `user`, exec.
    An exec failure comes back through a close-on-exec pipe as the child's errno."""
    uid, gid, groups = user
    error_r, error_w = _pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(error_r)
            os.setpgid(0, 0)
            for signum in _DEFAULT_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)  # last: after it, nothing of the above could be undone
            os.execve(exe, argv, env)
        except OSError as exc:
            os.write(error_w, b"%d" % (exc.errno or errno.EIO))
        finally:
            os._exit(127)
    with contextlib.suppress(OSError):  # also here, so a kill of the group never misses it
        os.setpgid(pid, pid)
    os.close(error_w)
    failed = os.read(error_r, 32)
    os.close(error_r)
    if failed:
        os.waitpid(pid, 0)
        raise OSError(int(failed), os.strerror(int(failed)))
    return pid


def _wire_fds(out_w: int, status_w: int, maxfd: int) -> None:
    """stdin from /dev/null, stdout and stderr to the pipe, nothing else inherited."""
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    if null != 0:
        os.dup2(null, 0)
    os.closerange(3, status_w)  # status_w is close-on-exec: the command never has it
    os.closerange(status_w + 1, maxfd)


def _kill_and_reap(group: int) -> None:
    # The command is a zombie (WNOWAIT), so its pid still names the group.
    _signal(os.killpg, group, signal.SIGKILL)
    while True:
        try:
            os.waitpid(-group, 0)
        except ChildProcessError:
            return
