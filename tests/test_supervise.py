"""webapp.supervise with real processes: exit codes, limits, group kill, supervision."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import gone, wait_until
from webapp import supervise
from webapp.supervise import RunResult, run_limited

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, params=["spawner", "fork"])
def supervisor_from(request, monkeypatch) -> str:
    """Each test runs twice: supervisors forked by the spawner, and by the caller (the fallback)."""
    if request.param == "fork":
        monkeypatch.setattr(supervise, "_spawner_for", lambda user: None)
    return request.param


def sh(command: str, *, timeout: float = 10, output_cap: int = 65536, cwd: Path = Path("/"),
       **options) -> RunResult:
    return run_limited(["bash", "-c", command], cwd=cwd, env=ENV, timeout=timeout,
                       output_cap=output_cap, **options)


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def read_pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


# -- exit codes and output ----------------------------------------------------------


def test_stdout_and_stderr_are_merged_in_order():
    result = sh("echo one; echo two >&2; echo three")
    assert result.output == "one\ntwo\nthree\n"


def test_non_utf8_output_is_replaced_not_fatal():
    result = sh(r"printf 'ok \xff\xfe done\n'; exit 1")
    assert result.exit_code == 1
    assert result.output == "ok \ufffd\ufffd done\n"


def test_a_command_killed_by_a_signal_reads_as_a_negative_exit_code():
    assert sh("kill -9 $$").exit_code == -signal.SIGKILL


def test_the_command_gets_exactly_the_given_environment_and_cwd(tmp_path):
    result = sh("pwd; env | grep -v '^_=' | sort", cwd=tmp_path)
    lines = result.output.splitlines()
    assert lines[0] == str(tmp_path)
    assert sorted(name.split("=")[0] for name in lines[1:]) == ["LANG", "PATH", "PWD", "SHLVL"]


def test_a_missing_command_is_an_error_not_an_exit_code(tmp_path):
    result = run_limited(["no-such-command-here"], cwd=tmp_path, env=ENV, timeout=5, output_cap=100)
    assert result.exit_code is None
    assert "'no-such-command-here' was not found" in result.error


def test_a_missing_working_directory_is_an_error(tmp_path):
    result = sh("true", cwd=tmp_path / "absent")
    assert result.exit_code is None
    assert result.error == "The command could not enter the working directory: No such file or directory."


# -- limits --------------------------------------------------------------------------


def test_output_beyond_the_cap_is_drained_and_marked_with_bounded_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = sh("echo start; head -c 52428800 /dev/zero | tr '\\0' x; echo; exit 3", output_cap=1024)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.exit_code == 3 and result.truncated
    assert result.output == "start\n" + "x" * 1018 + "\n[output truncated at 1024 bytes]\n"
    assert grown_kib < 20 * 1024


def test_timeout_kills_the_whole_group_including_a_grandchild_ignoring_sigterm(tmp_path):
    pids = tmp_path / "pids"
    started = time.monotonic()
    result = sh(f"echo $$ > {pids}; (trap '' TERM; sleep 100) & echo $! >> {pids}; echo waiting; sleep 100",
                timeout=1)
    assert time.monotonic() - started < 3.5
    assert (result.exit_code, result.timed_out, result.output) == (None, True, "waiting\n")
    assert result.error == "The command timed out after 1 s and was killed."
    leader, grandchild = read_pids(pids)
    assert group_gone(leader) and gone(leader) and gone(grandchild)


def test_a_background_child_holding_the_output_does_not_keep_the_run_going(tmp_path):
    pids = tmp_path / "pids"
    started = time.monotonic()
    result = sh(f"sleep 100 & echo $! > {pids}; echo done; exit 0", timeout=30)
    assert time.monotonic() - started < 3
    assert (result.exit_code, result.output) == (0, "done\n")
    assert wait_until(lambda: gone(read_pids(pids)[0]), 1)


def test_a_command_that_closes_its_output_still_reports_its_exit():
    started = time.monotonic()
    result = sh("echo before; exec >&- 2>&-; sleep 0.5; exit 3", timeout=30)
    assert 0.4 < time.monotonic() - started < 3
    assert (result.exit_code, result.output) == (3, "before\n")


def test_on_tick_sees_output_no_more_often_than_asked_and_can_stop_the_run(tmp_path):
    pids, ticks = tmp_path / "pids", []

    def on_tick(output: str, truncated: bool) -> bool:
        ticks.append((time.monotonic(), output, truncated))
        return len(ticks) < 3

    result = sh(f"echo $$ > {pids}; echo working; sleep 100", timeout=30, on_tick=on_tick, tick_seconds=0.3)
    assert (result.stopped, result.timed_out, result.exit_code) == (True, False, None)
    assert [output for _, output, _ in ticks] == ["working\n"] * 3
    gaps = [later[0] - earlier[0] for earlier, later in zip(ticks, ticks[1:], strict=False)]
    assert all(gap >= 0.29 for gap in gaps)
    assert wait_until(lambda: group_gone(read_pids(pids)[0]), 1)


def test_mask_hides_secrets_in_the_result_and_in_ticks():
    seen = []
    result = sh("echo token=s3cr3t-value; sleep 0.5; echo again s3cr3t-value", mask=["s3cr3t-value", ""],
                on_tick=lambda output, truncated: seen.append(output) or True, tick_seconds=0.2)
    assert result.output == "token=****\nagain ****\n"
    assert seen and all("s3cr3t" not in output for output in seen)


def test_a_secret_crossing_the_cap_is_still_masked():
    result = sh("printf 'abcdefTOPSECRET and more'", output_cap=10, mask=["TOPSECRET"])
    assert result.truncated and "TOP" not in result.output
    assert result.output.startswith("abcdef****")


# -- supervision ---------------------------------------------------------------------

VICTIM = """\
import sys
from pathlib import Path
from tests.helpers import gone, wait_until
from webapp import supervise
from webapp.supervise import run_limited

if sys.argv[2] == "fork":
    supervise._spawner_for = lambda user: None
pids = sys.argv[1]
script = f"echo $$ > {pids}; (trap '' TERM; sleep 100) & echo $! >> {pids}; sleep 100"
run_limited(["bash", "-c", script], cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, timeout=60, output_cap=100)
"""


def test_the_command_and_its_grandchildren_die_when_the_caller_is_sigkilled(tmp_path, supervisor_from):
    pids = tmp_path / "pids"
    caller = subprocess.Popen([sys.executable, "-c", VICTIM, str(pids), supervisor_from], cwd=PROJECT_ROOT,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert wait_until(lambda: pids.exists() and len(read_pids(pids)) == 2, 10)
        leader, grandchild = read_pids(pids)
        assert not gone(leader) and not gone(grandchild)
        caller.kill()
        caller.wait()
        assert wait_until(lambda: gone(leader) and gone(grandchild) and group_gone(leader), 3)
    finally:
        caller.kill()
        caller.wait()
