"""The real `python -m worker` process: killed mid-hook, its hook dies and the release fails."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import processes_running, release, trigger, wait_for
from webapp.running import WORK_ROOT

ROOT = Path(__file__).resolve().parents[2]


def test_worker_killed_mid_hook_takes_the_hook_along_and_the_release_fails(api, new_environment, start_worker,
                                                                          tally):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": (
        f'{tally.send()}\n'
        'if [ "$RELEASE_ID" = "$HANG_FOR" ]; then\n'
        '  (trap "" TERM; sleep 4242.31) &\n  setsid sleep 4242.31 &\n  sleep 4242.31\nfi\nexit 0\n')})
    first, second = trigger(api), trigger(api)
    api("admin").put("/api/v1/projects/svc/environments/env/variables/HANG_FOR",
                     json={"value": str(first), "for_hooks": True})
    worker = start_worker()
    wait_for(lambda: len(processes_running("sleep 4242.31")) >= 3, timeout=30)
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)
    wait_for(lambda: processes_running("sleep 4242.31") == [], timeout=30)
    leftovers = list(WORK_ROOT.glob(f"{worker.pid}-*"))
    assert leftovers  # the killed worker could not clean up its workspace…

    start_worker()
    wait_for(lambda: release(api, first)["state"] == "FAILED", timeout=60)
    assert "worker lost" in release(api, first)["error"]
    wait_for(lambda: release(api, second)["state"] == "SUCCEEDED", timeout=60)
    assert tally.lines == [str(first), str(second)]  # nothing ran twice
    assert not any(path.exists() for path in leftovers)  # …so the next worker swept it


def test_worker_killed_mid_apply_is_not_run_again(api, new_environment, start_worker, tally):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"},
                    release_command=f'{tally.send()}; if [ "$RELEASE_ID" = "$HANG_FOR" ]; then '
                                    'setsid sleep 4242.32 & sleep 4242.32; fi')
    first = trigger(api)
    api("admin").put("/api/v1/projects/svc/environments/env/variables/HANG_FOR", json={"value": str(first)})
    worker = start_worker()
    wait_for(lambda: len(processes_running("sleep 4242.32")) >= 2, timeout=30)
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)
    wait_for(lambda: processes_running("sleep 4242.32") == [], timeout=30)
    start_worker()
    wait_for(lambda: release(api, first)["state"] == "FAILED", timeout=60)
    assert "worker lost" in release(api, first)["error"]
    # A later release through the same single worker proves the first apply was not run again: a
    # re-run that gets to run the command starts while the first release is still IN_PROGRESS (once
    # FAILED, its job does nothing), so before the second was triggered; it would have sent its line
    # ahead of the second's and, hanging as the first apply did, kept this worker from finishing it.
    second = trigger(api)
    wait_for(lambda: release(api, second)["state"] == "SUCCEEDED", timeout=60)
    assert tally.lines == [str(first), str(second)]


def start_worker_with(app_config, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "REDIS_URL": app_config["REDIS_URL"], "RELEASEGATE_ENV": "development",
                               "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"], **env})


def test_a_worker_without_bwrap_refuses_to_start_and_says_what_to_install(app_config, tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with git and the rest, but no bwrap
    bin_dir.mkdir()
    for tool in ("git", "tar", "bash", "python3"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    finished = start_worker_with(app_config, PATH=str(bin_dir), HOOK_SANDBOX="")
    assert finished.returncode == 2
    assert "bwrap is not installed: install it (Debian: apt-get install bubblewrap)" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_an_unknown_sandbox_setting_stops_the_worker(app_config):
    finished = start_worker_with(app_config, HOOK_SANDBOX="off")
    assert finished.returncode == 2 and "HOOK_SANDBOX must be 'bwrap' (the default) or 'none'" in finished.stderr


def test_a_worker_with_hook_sandbox_none_warns_that_runs_are_unsandboxed(app_config):
    worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "REDIS_URL": app_config["REDIS_URL"], "HOOK_SANDBOX": "none",
                                   "RELEASEGATE_ENV": "development",
                                   "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"]})
    try:
        lines = [worker.stdout.readline() for _ in range(2)]  # the warnings come first
    finally:
        worker.kill()
        worker.wait(10)
    assert any("HOOK_SANDBOX=none: hooks and release commands run unsandboxed" in line for line in lines), lines
