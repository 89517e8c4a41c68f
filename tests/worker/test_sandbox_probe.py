"""The worker's start-up probe of the sandbox (running.sandbox.check), against a stand-in bwrap:
it runs with no stdin of the worker's, as the hook account, within a bound, and a refusal is
told with bwrap's last line (whatever its bytes) or "no reason given". And the account a box is
started as: bwrap itself runs as it; without the sandbox the reaper stays the worker's and switches
the command."""
from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from webapp.running import sandbox

REMEDY = ("allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
          "user.max_user_namespaces > 0), or set HOOK_SANDBOX=none to run hooks unsandboxed (docs/operations.md).")


def stand_in(monkeypatch, folder: Path, script: str) -> Path:
    fake = folder / "bwrap"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "BWRAP", str(fake))
    return fake


def test_the_probe_never_reads_the_workers_stdin(monkeypatch, tmp_path):
    seen = tmp_path / "seen"
    stand_in(monkeypatch, tmp_path, f"readlink /proc/self/fd/0 > {seen}\nexit 1")
    read_end, write_end = os.pipe()
    kept = os.dup(0)
    os.dup2(read_end, 0)  # the worker's stdin is a pipe someone could write to
    try:
        sandbox.check("bwrap", None)
    finally:
        os.dup2(kept, 0)
        for fd in (kept, read_end, write_end):
            os.close(fd)
    assert seen.read_text() == "/dev/null\n"


def test_a_refusal_without_a_word_from_bwrap_says_no_reason_was_given(monkeypatch, tmp_path):
    stand_in(monkeypatch, tmp_path, "exit 1")
    assert sandbox.check("bwrap", None) == (
        f"bubblewrap cannot start a sandbox on this machine (no reason given): {REMEDY}")


def test_a_refusal_in_bytes_that_are_not_utf8_is_still_told(monkeypatch, tmp_path):
    stand_in(monkeypatch, tmp_path, r"printf 'bwrap: caf\351 refused\n' >&2; exit 1")
    assert sandbox.check("bwrap", None) == (
        f"bubblewrap cannot start a sandbox on this machine (bwrap: caf\ufffd refused): {REMEDY}")


def test_a_bwrap_that_never_answers_is_reported_instead_of_holding_the_worker(monkeypatch, tmp_path):
    fake = stand_in(monkeypatch, tmp_path, "exec sleep 30")  # long past the bound: only a check without one waits
    monkeypatch.setattr(sandbox, "PROBE_SECONDS", 0.5)
    problem = sandbox.check("bwrap", None)
    assert problem.startswith(f"The bubblewrap sandbox could not be started (Command '['{fake}', ")
    assert problem.endswith("timed out after 0.5 seconds); see docs/operations.md.")


@pytest.mark.root
def test_the_probe_runs_bwrap_as_the_hook_account(monkeypatch):
    nobody = pwd.getpwnam("nobody")
    folder = Path(tempfile.mkdtemp(prefix="releasegate-probe-"))
    try:
        folder.chmod(0o777)
        seen = folder / "seen"
        stand_in(monkeypatch, folder, f'echo "$(id -u) $(id -g) $(id -G)" > {seen}\nexit 1')
        sandbox.check("bwrap", (nobody.pw_uid, nobody.pw_gid, []))
        assert seen.read_text() == f"{nobody.pw_uid} {nobody.pw_gid} {nobody.pw_gid}\n"
    finally:
        shutil.rmtree(folder)


# -- the account a box is started as ---------------------------------------------------------------

def test_without_the_sandbox_the_reaper_stays_the_workers_and_switches_the_command_to_the_account(tmp_path):
    box = sandbox.launch(["true"], cwd=tmp_path, binds=(), mode="none", account=(1000, 1001, [5, 6]),
                         env={"PATH": "/usr/bin", "LD_PRELOAD": "x.so"})
    assert box == sandbox.Launch([sys.executable, "-I", "-S", str(sandbox.REAPER), "--account", "1000,1001,5,6",
                                  "--setenv", "LD_PRELOAD=x.so", "--", "true"], {"PATH": "/usr/bin"})
    plain = sandbox.launch(["true"], cwd=tmp_path, binds=(), mode="none", account=None)
    assert plain.argv == [sys.executable, "-I", "-S", str(sandbox.REAPER), "--", "true"]


def test_in_the_sandbox_the_reaper_stays_the_workers_and_switches_bwrap_itself_to_the_account(tmp_path):
    """The reaper kills a box bwrap was still setting up should the worker die (test_sandbox.py);
    what it may set for its command alone is set inside the box, by bwrap."""
    box = sandbox.launch(["true"], cwd=tmp_path, binds=(), mode="bwrap", account=(1000, 1001, [5]),
                         env={"PATH": "/usr/bin", "LD_PRELOAD": "x.so"})
    assert box.argv[:8] == [sys.executable, "-I", "-S", str(sandbox.REAPER), "--account", "1000,1001,5", "--",
                            shutil.which("bwrap")]
    assert box.argv[-7:] == ["--setenv", "LD_PRELOAD", "x.so", "--chdir", str(tmp_path), "--", "true"]
    assert box.env == {"PATH": "/usr/bin"}
    plain = sandbox.launch(["true"], cwd=tmp_path, binds=(), mode="bwrap", account=None)
    assert plain.argv[:6] == [sys.executable, "-I", "-S", str(sandbox.REAPER), "--", shutil.which("bwrap")]


def test_bwrap_is_the_one_on_the_workers_path_never_one_the_commands_path_could_name(tmp_path):
    box = sandbox.launch(["true"], cwd=tmp_path, binds=(), mode="bwrap", account=None, env={"PATH": str(tmp_path)})
    bwrap = box.argv[box.argv.index("--") + 1]
    assert bwrap == shutil.which("bwrap") and os.path.isabs(bwrap)
