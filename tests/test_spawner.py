"""The spawner (webapp/spawner.py): the small process that forks supervisors for the worker.
It dies with the worker, a crash of it fails a run or is replaced, never hangs one, and the
worker's other threads still fork their own supervisors."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import gone, wait_until
from webapp import supervise
from webapp.supervise import run_limited

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def sh(command: str, **options):
    options.setdefault("timeout", 30)
    return run_limited(["bash", "-c", command], cwd=Path("/"), env=ENV, output_cap=65536, **options)


def the_spawner() -> subprocess.Popen:
    assert supervise.start_spawner()
    return supervise._spawner[0].process


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_commands_run_through_the_spawner_which_holds_no_environment():
    spawner = the_spawner()
    result = sh("echo $PPID")
    assert result.exit_code == 0
    supervisor = int(result.output)
    assert supervisor != os.getpid()
    assert Path(f"/proc/{spawner.pid}/environ").read_bytes() == b""  # no SECRET_KEY, no DATABASE_URL
    maps = Path(f"/proc/{spawner.pid}/maps").read_text()
    assert "site-packages" not in maps  # nothing of the application's dependencies is loaded there


def test_a_spawner_killed_while_idle_is_replaced_and_the_next_run_works():
    first = the_spawner()
    first.kill()
    first.wait()
    assert sh("echo fine").output == "fine\n"
    assert the_spawner().pid != first.pid


def test_a_spawner_killed_mid_run_fails_that_run_without_hanging_and_its_command_dies(tmp_path):
    spawner = the_spawner()
    pid_file = tmp_path / "pid"
    started = time.monotonic()

    def kill_spawner_once_the_command_runs() -> None:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10)
        spawner.kill()

    killer = threading.Thread(target=kill_spawner_once_the_command_runs)
    killer.start()
    result = sh(f"echo $$ > {pid_file}; echo started; sleep 60", timeout=60)
    killer.join()
    assert time.monotonic() - started < 10
    assert result.exit_code is None
    assert "supervisor" in result.error and "failed" in result.error
    assert wait_until(lambda: gone(int(pid_file.read_text())), 3)
    assert sh("echo again").output == "again\n"  # a new spawner took over


def test_a_spawner_that_stops_answering_fails_the_run_within_its_timeout():
    spawner = the_spawner()
    supervise._spawner[0].socket.settimeout(0.5)
    os.kill(spawner.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = sh("echo never")
        assert time.monotonic() - started < 5
        assert result.exit_code is None and "could not be started" in result.error
        assert spawner.poll() is not None  # it was stopped for good, and is replaced below
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(spawner.pid, signal.SIGCONT)
    assert sh("echo back").output == "back\n"


def test_a_supervisor_waits_ready_for_the_next_command_and_holds_nothing_of_the_last(monkeypatch):
    spawner = the_spawner()
    monkeypatch.setattr(supervise, "DRAIN_GRACE", 20.0)  # how long a held output pipe would delay the end
    started = time.monotonic()
    for _ in range(3):
        assert sh("true").exit_code == 0
    assert time.monotonic() - started < 10  # no run waited for its output pipe to close
    assert wait_until(lambda: len(children(spawner.pid)) == 1)  # the one forked ahead, waiting
    (standby,) = children(spawner.pid)
    assert Path(f"/proc/{standby}/stat").read_text().split()[5] == str(standby)  # in a session of its own
    assert sh("echo $PPID").output == f"{standby}\n"  # and it is the one that runs the next command


def test_a_supervisor_killed_while_waiting_for_its_command_is_replaced_without_failing_a_run():
    spawner = the_spawner()
    sh("true")
    assert wait_until(lambda: len(children(spawner.pid)) == 1)
    (standby,) = children(spawner.pid)
    os.kill(standby, signal.SIGKILL)
    assert wait_until(lambda: gone(standby))
    result = sh("echo $PPID")
    assert result.exit_code == 0 and int(result.output) != standby


def test_a_supervisor_told_to_stop_while_waiting_goes_and_the_next_run_is_not_stopped():
    spawner = the_spawner()
    sh("true")
    assert wait_until(lambda: len(children(spawner.pid)) == 1)
    (standby,) = children(spawner.pid)
    os.kill(standby, signal.SIGTERM)  # e.g. someone's `kill`: it must not stop the next command
    assert wait_until(lambda: standby not in children(spawner.pid))
    result = sh("echo ran")
    assert (result.exit_code, result.output, result.error) == (0, "ran\n", None)


def test_other_threads_fork_their_own_supervisor():
    the_spawner()
    results = []
    thread = threading.Thread(target=lambda: results.append(sh("echo $PPID; exit 3")))
    thread.start()
    thread.join()
    (result,) = results
    assert result.exit_code == 3
    supervisor = int(result.output)
    assert supervisor not in children(supervise._spawner[0].process.pid)


CALLER = """\
import sys
from pathlib import Path
from webapp.supervise import run_limited, start_spawner

assert start_spawner()
pids = sys.argv[1]
script = f"echo $$ > {pids}; (trap '' TERM; sleep 100) & echo $! >> {pids}; sleep 100"
run_limited(["bash", "-c", script], cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, timeout=60, output_cap=100)
"""


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_the_spawner_and_the_commands_die_with_the_worker(tmp_path, kill):
    pids = tmp_path / "pids"
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(pids)], cwd=PROJECT_ROOT,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2, 15)
        spawner = next(pid for pid in children(caller.pid)
                       if b"spawner.py" in Path(f"/proc/{pid}/cmdline").read_bytes())
        leader, grandchild = (int(pid) for pid in pids.read_text().split())
        supervisors = children(spawner)  # the command's, and the one waiting for the next command
        assert len(supervisors) == 2
        caller.send_signal(kill)
        caller.wait(10)
        assert wait_until(lambda: all(gone(pid) for pid in (spawner, leader, grandchild, *supervisors)), 5)
    finally:
        caller.kill()
        caller.wait()
