"""The supervisor of one command, and the spawner: a small process that forks supervisors.

Forking the ~90 MB worker for every hook costs milliseconds of page-table copying, and as much
again to tear the copy down. The worker instead starts this file once, as
`python -S -I spawner.py <socket fd> <worker pid>`, and asks it for each supervisor: forking a
process that has imported nothing of the application costs a fraction of a millisecond. Even
that is kept off a command's way: the spawner forks each supervisor ahead, armed and waiting
(_Standby), and a request is only handed over to it.

The chain still dies as one: the spawner gets SIGKILL when the worker dies, and each supervisor
gets SIGTERM when the spawner dies (both PR_SET_PDEATHSIG), then kills its command's group.
Standard library only, and os-level calls in the supervisor: the application is never imported
here (supervise.py imports this module for the worker's side and for its fork fallback).

Messages, both ways: a 4-byte big-endian length, then a `marshal`led tuple. The spawner says
("ready", <its effective capabilities>) once; each request is the command's spec with two file
descriptors attached (its output pipe and its status pipe); the answer is ("ok", <pid>) with a
pidfd of the supervisor attached when the kernel has them, or ("error", <errno>).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import marshal
import os
import signal
import socket
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Reset for the command: Python ignores SIGPIPE and SIGXFSZ, a daemon may ignore more.
DEFAULT_SIGNALS = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ,
    signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGCHLD,
)
_CAP_SETGID, _CAP_SETUID = 6, 7
try:  # resolved at import so a forked supervisor only makes the call
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal
    _prctl = None

# exe, argv, env, cwd, account (uid, gid, groups) or None
Spawn = tuple[bytes, list[bytes], dict[bytes, bytes], bytes, "tuple[int, int, list[int]] | None"]


# -- messages -------------------------------------------------------------------------------


def send(sock: socket.socket, message: tuple, fds: list[int] = ()) -> None:
    data = marshal.dumps(message)
    data = len(data).to_bytes(4, "big") + data
    sent = socket.send_fds(sock, [data], list(fds)) if fds else sock.send(data)
    if sent < len(data):
        sock.sendall(data[sent:])


def receive(sock: socket.socket, max_fds: int = 2) -> tuple[tuple, list[int]] | None:
    """The next message and the descriptors that came with it; None at end of stream."""
    data, fds, need = b"", [], 4
    while len(data) < need:
        chunk, more, _flags, _address = socket.recv_fds(sock, need - len(data), max_fds, socket.MSG_CMSG_CLOEXEC)
        fds += more
        if not chunk:
            for fd in fds:
                os.close(fd)
            return None
        data += chunk
        if need == 4 and len(data) == 4:
            need += int.from_bytes(data, "big")
    return marshal.loads(data[4:]), fds


# -- the spawner process ----------------------------------------------------------------------


def serve(sock_fd: int, worker: int) -> None:
    """Fork a supervisor for each request until the worker goes away. Never returns."""
    _keep_standard_fds_open()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the worker's to handle
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != worker:  # the worker died before the parent-death signal was armed
        os._exit(0)
    signal.signal(signal.SIGCHLD, _reap)
    sock = socket.socket(fileno=sock_fd)
    send(sock, ("ready", _effective_capabilities()))
    maxfd = max_fd()
    standby: _Standby | int = _Standby.fork(sock, maxfd)
    while True:
        try:
            message = receive(sock)
        except OSError:
            message = None
        if message is None:  # the worker closed its end, or died
            os._exit(0)
        spec, fds = message
        try:
            if len(fds) != 2:
                send(sock, ("error", errno.EINVAL))
                continue
            supervisor, reply = _start(standby, spec, fds, sock, maxfd)
            try:
                send(sock, reply, supervisor.pidfds if supervisor is not None else [])
            finally:
                if supervisor is not None:
                    supervisor.close()
        finally:
            for fd in fds:  # before the next fork: no other process may hold a command's pipes
                os.close(fd)
        standby = _Standby.fork(sock, maxfd)  # the next one, while no request waits


def _start(standby: _Standby | int, spec: Spawn, fds: list[int], worker: socket.socket,
           maxfd: int) -> tuple[_Standby | None, tuple]:
    """Hand a request over to the standby: (the supervisor now running it, the answer). A
    standby that could not be forked (while the last command kept the machine busy) or that
    died waiting (someone killed it) is forked again, once."""
    if isinstance(standby, _Standby):
        if standby.hand_over(spec, fds):
            return standby, ("ok", standby.pid)
        standby.close()
    standby = _Standby.fork(worker, maxfd)
    if not isinstance(standby, _Standby):
        return None, ("error", standby)
    if standby.hand_over(spec, fds):
        return standby, ("ok", standby.pid)
    standby.close()
    return None, ("error", errno.EPIPE)


class _Standby:
    """A supervisor forked ahead of its command, armed and waiting for it on a socket of its
    own: a request is only handed over, and the fork (a millisecond or more, most of what
    stood between a request and its command's start) happens after answering the one before."""

    def __init__(self, pid: int, pidfds: list[int], handed: socket.socket) -> None:
        self.pid, self.pidfds, self.handed = pid, pidfds, handed

    @classmethod
    def fork(cls, worker: socket.socket, maxfd: int) -> _Standby | int:
        """The standby, or the errno of a failed fork."""
        try:
            handed, theirs = socket.socketpair()
        except OSError as exc:  # out of descriptors: this request fails, the spawner lives on
            return exc.errno or errno.EMFILE
        me = os.getpid()
        # SIGTERM stays blocked in the child until its handler is in place; SIGCHLD is held
        # off here until the pidfd is open, so the reaper cannot take the pid first.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGCHLD})
        try:
            try:
                pid = os.fork()
            except OSError as exc:
                handed.close()
                theirs.close()
                return exc.errno or errno.EAGAIN
            if pid == 0:
                worker.close()
                handed.close()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                _supervise(lambda: _receive_quietly(theirs), me, maxfd)
            theirs.close()
            try:
                return cls(pid, [os.pidfd_open(pid)], handed)
            except (OSError, AttributeError):  # a kernel without pidfds: the pid alone
                return cls(pid, [], handed)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def hand_over(self, spec: Spawn, fds: list[int]) -> bool:
        try:
            send(self.handed, spec, fds)
            return True
        except OSError:  # it died waiting (killed by someone)
            return False

    def close(self) -> None:
        self.handed.close()
        for fd in self.pidfds:
            os.close(fd)
        self.pidfds = []


def _receive_quietly(sock: socket.socket) -> tuple[Spawn, list[int]] | None:
    """The standby's wait for its command. A SIGTERM meanwhile (someone's `kill`) ends it at
    once, rather than stopping the command it would be handed next; the spawner then hands
    that command to a new standby."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        return receive(sock)
    except OSError:
        return None
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        sock.close()


def _reap(signum: int, frame: object) -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _keep_standard_fds_open() -> None:
    """Descriptors received later must not land on 0-2, where a supervisor wires the command."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # takes the lowest free number: this one


def _effective_capabilities() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return (1 << 64) - 1 if os.geteuid() == 0 else 0


def can_switch_user(capabilities: int) -> bool:
    return bool(capabilities & (1 << _CAP_SETUID)) and bool(capabilities & (1 << _CAP_SETGID))


def max_fd() -> int:
    try:
        return max(os.sysconf("SC_OPEN_MAX"), 256)
    except (OSError, ValueError):
        return 65536


# -- the supervisor: runs in a forked child, os-level calls only ------------------------------


class _Stop(Exception):
    pass


def supervise(spawn: Spawn, out_w: int, status_w: int, parent: int, maxfd: int) -> None:
    """Never returns. Runs the command in its own group and kills that group when the
    command exits, when told to stop (SIGTERM) or when `parent` dies.

    Status pipe protocol, one line each: `started <pid>`, then `exit <code>`,
    `error <errno> <cwd|exec>`, `stopped` or `failed`.
    """
    _supervise(lambda: (spawn, [out_w, status_w]), parent, maxfd)


def _supervise(command: Callable[[], tuple[Spawn, list[int]] | None], parent: int, maxfd: int) -> None:
    """supervise(), with the command and its two pipes from `command()`, asked for once this
    process is armed (its own session, a signal when `parent` dies); None: exit at once."""
    spawned = [0]
    status_w = None

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
            armed = _arm(parent)
            given = command()
            if given is None or len(given[1]) != 2:
                return
            spawn, (out_w, status_w) = given
            if armed:
                status = _spawn_and_wait(spawn, out_w, status_w, maxfd, spawned)
        except _Stop:
            status = b"stopped\n"
        except BaseException:
            pass
        if status_w is None:
            return
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


def _arm(parent: int) -> bool:
    """A session of its own, SIGTERM when `parent` dies, the command's orphans as children;
    False when `parent` died before that signal was armed."""
    os.setsid()
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of the command come to us
    return os.getppid() == parent


def _spawn_and_wait(spawn: Spawn, out_w: int, status_w: int, maxfd: int, spawned: list[int]) -> bytes:
    exe, argv, env, cwd, user = spawn
    _wire_fds(out_w, status_w, maxfd)
    stage = b"cwd"
    try:
        os.chdir(cwd)
        stage = b"exec"
        if user is None:
            spawned[0] = os.posix_spawn(exe, argv, env, setpgroup=0, setsigmask=(),
                                        setsigdef=DEFAULT_SIGNALS)
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


def _spawn_as(user: tuple[int, int, list[int]], exe: bytes, argv: list[bytes], env: dict[bytes, bytes]) -> int:
    """posix_spawn with a change of user, which it cannot do: fork, drop to `user`, exec.
    An exec failure comes back through a close-on-exec pipe as the child's errno."""
    uid, gid, groups = user
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(error_r)
            os.setpgid(0, 0)
            for signum in DEFAULT_SIGNALS:
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
    os.set_inheritable(status_w, False)  # the command must never hold the status pipe
    os.closerange(3, status_w)
    os.closerange(status_w + 1, maxfd)


def _kill_and_reap(group: int) -> None:
    # The command is a zombie (WNOWAIT), so its pid still names the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    while True:
        try:
            os.waitpid(-group, 0)
        except ChildProcessError:
            return


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
