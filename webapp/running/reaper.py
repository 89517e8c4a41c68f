"""Run one command (bwrap, or with HOOK_SANDBOX=none the hook itself) and kill whatever it leaves behind.

    python -I -S reaper.py [--account UID,GID[,GROUP...]] [--setenv NAME=VALUE]... -- COMMAND [ARG...]

A child subreaper: every process the command starts, `setsid` or double-forked ones
included, is reparented to this process when its parent exits, and is killed when the command
exits, when this process is told to stop (SIGTERM), or when the worker dies (the parent-death
signal is SIGTERM, so the cleanup still runs). A box bwrap was still setting up, whose own
parent-death signal is not armed yet, is one of them. Exits with the command's status (128+N for a
signal N). Imports nothing of the application and holds none of its settings.
"""
import contextlib
import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class Stop(Exception):
    pass


def _stop(signum, frame):
    raise Stop


def children() -> list[int]:
    pids = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as handle:
                pids += [int(pid) for pid in handle.read().split()]
        except OSError:
            pass
    return pids


def kill_descendants() -> None:
    """SIGKILL every child until none is left. A killed child's children become ours, so the
    list is read again on every round (never block on one wait: one of them may not be listed yet)."""
    while True:
        for pid in children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            reaped, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not reaped:
            time.sleep(0.01)


def main(argv: list[str]) -> int:
    account, extra = None, {}
    if argv[:1] == ["--account"]:
        account = [int(part) for part in argv[1].split(",")]
        argv = argv[2:]
    while argv[:1] == ["--setenv"]:  # for the command alone, never this process (LD_PRELOAD…)
        name, _, value = argv[1].partition("=")
        extra[name] = value
        argv = argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2:
        print("usage: reaper.py [--account UID,GID[,GROUP...]] -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    command = argv[1:]
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _stop)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    if os.getppid() != parent:  # the worker died before the signal was armed
        return 1
    status = 1
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # no stop between fork and exec's reset
        pid = os.fork()
        if pid == 0:
            try:
                # Python ignores these; exec would pass that on, and a hook killed by a broken pipe must fail
                for signum in (signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
                os.setpgid(0, 0)
                if account:
                    os.setgroups(account[2:])
                    os.setgid(account[1])
                    os.setuid(account[0])
                os.execvpe(command[0], command, {**os.environ, **extra})
            except OSError as error:
                print(f"The command {command[0]} could not be started: {error.strerror}.", file=sys.stderr)
            os._exit(127)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        _, raw = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(raw)
        status = 128 - status if status < 0 else status
    except Stop:
        status = 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second stop must not cut the cleanup short
        kill_descendants()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
