"""Hooks and commands in their box (webapp.running.sandbox) within limits (webapp.running.limits),
with real processes: exit codes, output, timeouts, stops, and that nothing a run started
outlives it. Each test runs in the bubblewrap sandbox and under HOOK_SANDBOX=none's reaper;
the tests of what the box hides run in the sandbox only."""
from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import processes_running, wait_until, watchdog
from webapp.running import sandbox
from webapp.running.limits import RunResult, run_limited
from webapp.running.sandbox import Bind

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODES = [pytest.param("bwrap", marks=pytest.mark.sandbox), "none"]


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def work(tmp_path) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


def sh(command: str, mode: str, work: Path, *, timeout: float = 10, output_cap: int = 65536,
       binds: tuple[Bind, ...] = (), cwd: Path | None = None, **options) -> RunResult:
    box = sandbox.launch(["bash", "-c", command], cwd=cwd or work, binds=[Bind(str(work), True), *binds],
                         mode=mode, account=None)
    return run_limited(box.argv, cwd=cwd or work, env=ENV, timeout=timeout, output_cap=output_cap, **options)


# -- exit codes and output ----------------------------------------------------------


def test_stdout_and_stderr_are_merged_in_order(mode, work):
    assert sh("echo one; echo two >&2; echo three", mode, work).output == "one\ntwo\nthree\n"


def test_a_command_killed_by_a_broken_pipe_reads_as_killed_never_as_its_own_exit(mode, work):
    assert sh("kill -PIPE $$; exit 0", mode, work).exit_code == 128 + signal.SIGPIPE


def test_exit_codes_come_through(mode, work):
    assert [sh(f"exit {code}", mode, work).exit_code for code in (0, 2, 1, 3)] == [0, 2, 1, 3]


def test_non_utf8_output_is_replaced_not_fatal(mode, work):
    result = sh(r"printf 'ok \xff\xfe done\n'; exit 1", mode, work)
    assert (result.exit_code, result.output) == (1, "ok \ufffd\ufffd done\n")


def test_a_command_killed_by_a_signal_reads_as_128_plus_the_signal(mode, work):
    assert sh("kill -9 $$", mode, work).exit_code == 137


def test_the_command_gets_exactly_the_given_environment_and_cwd(mode, work):
    lines = sh("pwd; env | grep -v '^_=' | sort", mode, work).output.splitlines()
    assert lines[0] == str(work)
    assert sorted(name.split("=")[0] for name in lines[1:]) == ["LANG", "PATH", "PWD", "SHLVL"]


def test_a_missing_command_fails_and_says_so_never_reads_as_a_decision(mode, work):
    box = sandbox.launch(["no-such-command-here"], cwd=work, binds=[Bind(str(work), True)], mode=mode, account=None)
    result = run_limited(box.argv, cwd=work, env=ENV, timeout=5, output_cap=1000)
    assert result.exit_code not in (0, 2)
    assert "no-such-command-here" in result.output or "not found" in (result.error or "")


def test_a_missing_working_directory_is_an_error(mode, work):
    result = sh("true", mode, work, cwd=work / "absent")
    assert result.exit_code is None
    assert result.error == "The command could not enter its working directory: it is gone."


# -- limits --------------------------------------------------------------------------


def test_output_beyond_the_cap_is_drained_and_marked_with_bounded_memory(mode, work):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = sh("echo start; head -c 52428800 /dev/zero | tr '\\0' x; echo; exit 3", mode, work, output_cap=1024)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.exit_code == 3 and result.truncated
    assert result.output == "start\n" + "x" * 1018 + "\n[output truncated at 1024 bytes]\n"
    assert grown_kib < 20 * 1024


def test_timeout_kills_everything_the_command_started_setsid_and_sigterm_proof_included(mode, work):
    with watchdog("sleep 4242.21"):
        result = sh("(trap '' TERM; sleep 4242.21) & setsid sleep 4242.21 & echo waiting; sleep 4242.21",
                    mode, work, timeout=1)
    assert (result.exit_code, result.timed_out, result.output) == (None, True, "waiting\n")
    assert result.error == "The command timed out after 1 s and was killed."
    assert wait_until(lambda: processes_running("sleep 4242.21") == [], 30)


def test_what_a_command_leaves_running_dies_when_it_exits(mode, work):
    # the run ends with the command, not with what it left behind (which the watchdog would end,
    # failing the test, after a minute)
    with watchdog("sleep 4242.22"):
        result = sh("sleep 4242.22 & setsid sleep 4242.22 & (setsid bash -c 'sleep 4242.22 &') ; echo done; exit 0",
                    mode, work, timeout=300)
    assert (result.exit_code, result.timed_out, result.output) == (0, False, "done\n")
    assert wait_until(lambda: processes_running("sleep 4242.22") == [], 30)


def test_a_command_that_closes_its_output_still_reports_its_exit(mode, work):
    result = sh("echo before; exec >&- 2>&-; sleep 0.5; exit 3", mode, work, timeout=300)
    assert (result.exit_code, result.timed_out, result.output) == (3, False, "before\n")  # waited for the exit


def test_on_tick_sees_output_no_more_often_than_asked_and_can_stop_the_run(mode, work):
    ticks = []

    def on_tick(output: str, truncated: bool) -> bool:
        ticks.append((time.monotonic(), output, truncated))
        return len(ticks) < 3

    result = sh("echo working; setsid sleep 4242.23 & sleep 4242.23", mode, work, timeout=30, on_tick=on_tick,
                tick_seconds=0.3)
    assert (result.stopped, result.timed_out, result.exit_code) == (True, False, None)
    assert [output for _, output, _ in ticks] == ["working\n"] * 3
    gaps = [later[0] - earlier[0] for earlier, later in zip(ticks, ticks[1:], strict=False)]
    assert all(gap >= 0.29 for gap in gaps)
    assert wait_until(lambda: processes_running("sleep 4242.23") == [], 60)


def test_mask_hides_secrets_in_the_result_and_in_ticks(mode, work):
    seen = []
    result = sh("echo token=s3cr3t-value; sleep 0.5; echo again s3cr3t-value", mode, work,
                mask=["s3cr3t-value", ""], on_tick=lambda output, truncated: seen.append(output) or True,
                tick_seconds=0.2)
    assert result.output == "token=****\nagain ****\n"
    assert seen and all("s3cr3t" not in output for output in seen)


def test_a_secret_crossing_the_cap_is_still_masked(mode, work):
    result = sh("printf 'abcdefTOPSECRET and more'", mode, work, output_cap=10, mask=["TOPSECRET"])
    assert result.truncated and "TOP" not in result.output
    assert result.output.startswith("abcdef****")


# -- the death of the caller -----------------------------------------------------------

VICTIM = """\
import sys
from pathlib import Path
from webapp.running import sandbox
from webapp.running.limits import run_limited

work = Path(sys.argv[1])
script = "(trap '' TERM; sleep 4242.24) & setsid sleep 4242.24 & sleep 4242.24"
box = sandbox.launch(["bash", "-c", script], cwd=work, binds=[sandbox.Bind(str(work), True)], mode=sys.argv[2],
                     account=None)
run_limited(box.argv, cwd=work, env={"PATH": "/usr/bin:/bin"}, timeout=60, output_cap=100)
"""


def test_everything_a_command_started_dies_when_the_worker_is_sigkilled(mode, work):
    caller = subprocess.Popen([sys.executable, "-c", VICTIM, str(work), mode], cwd=PROJECT_ROOT,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert wait_until(lambda: len(processes_running("sleep 4242.24")) >= 3, 60)
        caller.kill()
        caller.wait()
        assert wait_until(lambda: processes_running("sleep 4242.24") == [], 60)
    finally:
        caller.kill()
        caller.wait()


HELD = """\
import shutil, sys
from pathlib import Path
from webapp.running import sandbox
from webapp.running.limits import run_limited

work, gate = Path(sys.argv[1]), sys.argv[2]
box = sandbox.launch(["sleep", "4242.26"], cwd=work, binds=[sandbox.Bind(str(work), True)], mode="bwrap", account=None)
at = box.argv.index(shutil.which("bwrap"))
# bwrap's own --block-fd holds the box in its set-up, before its first process arms anything
held = ["sh", "-c", 'exec 3<>"$0"; exec "$@"', gate, box.argv[at], "--block-fd", "3"]
run_limited(box.argv[:at] + held + box.argv[at + 1:], cwd=work, env={"PATH": "/usr/bin:/bin"}, timeout=60,
            output_cap=100)
"""


def bwraps(marker: str) -> list[int]:
    """The running bwrap processes whose command line holds `marker`."""
    def named(pid: int) -> bool:
        with contextlib.suppress(OSError):
            return Path(f"/proc/{pid}/comm").read_text() == "bwrap\n"
        return False

    return [pid for pid in processes_running(marker) if named(pid)]


def waits_on_a_pipe(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return "pipe_read" in Path(f"/proc/{pid}/wchan").read_text()  # pipe_read, anon_pipe_read
    return False


@pytest.mark.sandbox
def test_a_box_the_worker_dies_under_while_it_is_being_set_up_never_runs(work):
    """bwrap arms its parent-death signal inside the box only once the box is set up: a worker
    killed before then must still take the box along, never leave it to start the command alone."""
    gate = work / "gate"
    os.mkfifo(gate)
    caller = subprocess.Popen([sys.executable, "-c", HELD, str(work), str(gate)], cwd=PROJECT_ROOT,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert wait_until(lambda: any(waits_on_a_pipe(pid) for pid in bwraps("4242.26")), 60)  # at --block-fd
        box = bwraps("4242.26")
        caller.kill()
        caller.wait()
        assert wait_until(lambda: len(bwraps("4242.26")) < len(box), 60)  # bwrap itself is gone
        with contextlib.suppress(OSError), open(os.open(gate, os.O_WRONLY | os.O_NONBLOCK), "w") as release:
            release.write("go")  # what is left of the box may go on now
        assert wait_until(lambda: not set(box) & set(bwraps("4242.26")), 60)
        assert wait_until(lambda: processes_running("4242.26") == [], 60)
    finally:
        caller.kill()
        caller.wait()
        for pid in processes_running("4242.26"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


UNBOXED = """\
import os, signal, sys, threading
from pathlib import Path
from webapp.running.limits import run_limited

threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL)).start()
run_limited(["sleep", "4242.25"], cwd=Path(sys.argv[1]), env={"PATH": "/usr/bin:/bin"}, timeout=60, output_cap=100)
"""


def test_what_run_limited_starts_dies_with_the_worker_before_any_sandbox_arms_itself(work):
    """The parent-death signal is armed between fork and exec, so a worker killed while bwrap or
    the reaper is still starting takes it along: a plain `sleep`, which arms nothing, shows it."""
    caller = subprocess.run([sys.executable, "-c", UNBOXED, str(work)], cwd=PROJECT_ROOT, timeout=30,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert caller.returncode == -9
    assert wait_until(lambda: processes_running("sleep 4242.25") == [], 60)


# -- what the box hides (the sandbox only) -------------------------------------------------

bwrap_only = pytest.mark.sandbox


@bwrap_only
def test_the_box_shows_only_the_system_folders_and_what_it_is_given(work, tmp_path):
    host_tmp = Path("/tmp") / f"releasegate-test-{os.getpid()}"
    host_tmp.write_text("on the host's /tmp\n")
    (tmp_path / "elsewhere").mkdir()
    try:
        result = sh(f"ls -A /; test -e {host_tmp} && echo host-tmp-visible; test -e {PROJECT_ROOT} && echo app-visible;"
                    f" test -e {tmp_path / 'elsewhere'} && echo sibling-visible; test -e /root && echo root-visible;"
                    " test -e /home && echo home-visible; test -e /var && echo var-visible; echo checked", "bwrap",
                    work)
    finally:
        host_tmp.unlink()
    *top, last = result.output.splitlines()
    assert last == "checked"
    assert set(top) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr",
                        *Path(work).parts[1:2]}, top  # the work folder is bound at its own path


@bwrap_only
def test_the_box_sees_no_other_process_and_no_capability(work):
    result = sh(f"ls /proc | grep -c '^[0-9]'; cat /proc/{os.getpid()}/environ >/dev/null 2>&1 || echo no-environ;"
                " grep CapEff /proc/self/status", "bwrap", work)
    count, environ, caps = result.output.splitlines()
    assert int(count) <= 4  # the box's init, bash, ls and grep
    assert environ == "no-environ"
    assert caps.split() == ["CapEff:", "0000000000000000"]


@bwrap_only
def test_a_read_only_bind_cannot_be_written_and_a_writable_one_can(work, tmp_path):
    shared, private = tmp_path / "ro", tmp_path / "rw"
    shared.mkdir()
    private.mkdir()
    result = sh(f"touch {shared}/x 2>/dev/null || echo refused; touch {private}/y && echo written; touch {work}/z",
                "bwrap", work, binds=(Bind(str(shared)), Bind(str(private), True)))
    assert result.output == "refused\nwritten\n"
    assert not (shared / "x").exists() and (private / "y").exists() and (work / "z").exists()


@bwrap_only
def test_the_box_shares_the_network_so_a_command_reaches_127_0_0_1(work):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = []

    def accept():
        connection, _ = server.accept()
        with connection:
            received.append(connection.recv(100))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    result = sh(f"echo hello > /dev/tcp/127.0.0.1/{port} && echo sent", "bwrap", work)
    thread.join(5)
    server.close()
    assert result.output == "sent\n" and received == [b"hello\n"]


@bwrap_only
def test_the_worker_checks_that_a_sandbox_can_start_here():
    assert sandbox.check("bwrap", None) is None


def test_without_bwrap_the_check_says_what_to_install(monkeypatch):
    monkeypatch.setattr(sandbox, "BWRAP", "/nonexistent/bwrap")
    problem = sandbox.check("bwrap", None)
    assert "bwrap is not installed" in problem and "apt-get install bubblewrap" in problem
    assert "HOOK_SANDBOX=none" in problem


def test_a_sandbox_that_cannot_start_is_named_with_what_to_set(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "BWRAP", str(fake))
    problem = sandbox.check("bwrap", None)
    assert "No permissions to create new namespace" in problem and "user namespaces" in problem


def test_the_check_starts_the_box_with_nothing_of_the_workers_and_says_the_whole_remedy(monkeypatch, tmp_path):
    """The probe runs bwrap as the hooks will be: no environment, no stdin, from /."""
    seen = tmp_path / "seen"
    fake = tmp_path / "bwrap"
    # what the shell adds itself (PWD, SHLVL, _) aside, the variables it was given; its folder; its stdin
    probe = f"{{ env | grep -cv '^PWD=\\|^SHLVL=\\|^_=' ; pwd; readlink /proc/self/fd/0; }} > {seen}"
    fake.write_text(f"#!/bin/sh\n{probe}\n"
                    "echo 'first line' >&2\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "BWRAP", str(fake))
    monkeypatch.setenv("SECRET_KEY", "the worker's own")
    problem = sandbox.check("bwrap", None)
    assert problem == ("bubblewrap cannot start a sandbox on this machine (bwrap: No permissions to create new "
                       "namespace): allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 "
                       "and user.max_user_namespaces > 0), or set HOOK_SANDBOX=none to run hooks unsandboxed "
                       "(docs/operations.md).")
    assert seen.read_text().split("\n")[:3] == ["0", "/", "/dev/null"]


@pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=pytest.mark.sandbox), "none"])
def test_in_either_mode_the_check_needs_the_reaper_every_run_starts_under(mode, monkeypatch, tmp_path):
    assert sandbox.check(mode, None) is None
    missing = tmp_path / "reaper.py"
    monkeypatch.setattr(sandbox, "REAPER", missing)
    assert sandbox.check(mode, None) == f"Every run starts under {missing}, which is missing: reinstall."


def test_an_unknown_sandbox_mode_is_refused():
    assert "HOOK_SANDBOX must be 'bwrap'" in sandbox.check("docker", None)


def test_the_applications_files_under_a_shared_system_folder_are_named():
    assert sandbox.exposed(["/usr/local/releasegate", "/srv/releasegate", "/etc/releasegate.env"]) == [
        "/usr/local/releasegate", "/etc/releasegate.env"]


@bwrap_only
def test_the_applications_configuration_folder_is_empty_in_the_box(work, tmp_path, monkeypatch):
    system, config = tmp_path / "system", tmp_path / "system" / "releasegate"
    config.mkdir(parents=True)
    (config / "releasegate.env").write_text("SECRET_KEY=never-in-a-box\n")
    (system / "hosts").write_text("127.0.0.1 localhost\n")
    monkeypatch.setattr(sandbox, "SYSTEM_DIRS", (*sandbox.SYSTEM_DIRS, str(system)))
    monkeypatch.setattr(sandbox, "HIDDEN", (str(config),))
    result = sh(f"cat {system}/hosts; ls -A {config}; cat {config}/releasegate.env 2>/dev/null || echo hidden",
                "bwrap", work)
    assert result.output == "127.0.0.1 localhost\nhidden\n"


def test_a_failure_while_watching_stops_the_run_before_it_is_raised(mode, work):
    def broken_heartbeat(output: str, truncated: bool) -> bool:
        raise RuntimeError("the database refused the heartbeat")

    with pytest.raises(RuntimeError):
        sh("setsid sleep 4242.25 & sleep 4242.25", mode, work, on_tick=broken_heartbeat, tick_seconds=0.2)
    assert wait_until(lambda: processes_running("sleep 4242.25") == [], 60)


def test_a_nul_in_the_output_is_replaced_so_it_can_be_stored(mode, work):
    assert sh(r"printf 'a\0b\n'", mode, work).output == "a\ufffdb\n"


def test_loader_variables_go_into_the_box_and_never_reach_the_launcher(mode, work):
    box = sandbox.launch(["true"], cwd=work, binds=[], mode=mode, account=None,
                         env={"PATH": "/usr/bin", "LD_PRELOAD": "./evil.so", "GCONV_PATH": "./g"})
    assert box.env == {"PATH": "/usr/bin"}
    assert "LD_PRELOAD" in " ".join(box.argv) and "./evil.so" in " ".join(box.argv)


def test_a_workspace_root_that_is_not_the_workers_own_is_refused(tmp_path, monkeypatch):
    from webapp.running import workspace

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    monkeypatch.setattr(workspace, "WORK_ROOT", tmp_path / "link")
    with pytest.raises(RuntimeError, match="is not a folder of this worker's own"):
        workspace.check_work_root()


def test_a_tree_deeper_than_python_recurses_is_still_removed(tmp_path):
    from webapp.running import workspace

    deep = tmp_path / "deep"
    subprocess.run(["mkdir", "-p", str(deep) + "/d" * 1200], check=True)  # os.makedirs itself recurses
    workspace.remove(deep)
    assert not deep.exists()
