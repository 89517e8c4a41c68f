"""The real `python -m worker` process: killed mid-hook, its hook dies and the release fails."""
from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.helpers import gone, release, trigger, wait_for
from webapp.runner import WORK_ROOT

ROOT = Path(__file__).resolve().parent.parent


def test_worker_killed_mid_hook_takes_the_hook_along_and_the_release_fails(api, new_environment, start_worker,
                                                                          tmp_path):
    runs, pids, hang_once = tmp_path / "runs", tmp_path / "pids", tmp_path / "hang-once"
    hang_once.touch()
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": (
        f'echo "$RELEASE_ID" >> {runs}\n'
        f'if [ -e {hang_once} ]; then rm {hang_once}\n'
        f'  (trap "" TERM; sleep 120) & echo $! >> {pids}\n'
        f'  echo $$ >> {pids}; sleep 120\nfi\nexit 0\n')})
    first, second = trigger(api), trigger(api)
    worker = start_worker()
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, timeout=30)
    worker.send_signal(signal.SIGKILL)
    worker.wait(5)
    hook_pids = [int(pid) for pid in pids.read_text().split()]
    wait_for(lambda: all(gone(pid) for pid in hook_pids), timeout=5)
    leftovers = list(WORK_ROOT.glob(f"{worker.pid}-*"))
    assert leftovers  # the killed worker could not clean up its workspace…

    start_worker()
    lost_at = time.monotonic()
    wait_for(lambda: release(api, first)["state"] == "FAILED", timeout=15)
    assert "worker lost" in release(api, first)["error"]
    assert time.monotonic() - lost_at < 3 + 1 + 5
    wait_for(lambda: release(api, second)["state"] == "SUCCEEDED", timeout=20)
    assert runs.read_text().split() == [str(first), str(second)]  # nothing ran twice
    assert not any(path.exists() for path in leftovers)  # …so the next worker swept it


def test_worker_killed_mid_apply_is_not_run_again(api, new_environment, start_worker, tmp_path):
    applies, pid_file = tmp_path / "applies", tmp_path / "pid"
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"},
                    release_command=f'echo "$RELEASE_ID" >> {applies}; echo $$ > {pid_file}; sleep 120')
    first = trigger(api)
    worker = start_worker()
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=30)
    apply_pid = int(pid_file.read_text())
    worker.send_signal(signal.SIGKILL)
    worker.wait(5)
    wait_for(lambda: gone(apply_pid), timeout=5)
    start_worker()
    wait_for(lambda: release(api, first)["state"] == "FAILED", timeout=15)
    assert "worker lost" in release(api, first)["error"]
    time.sleep(2)  # a re-run would have appended again by now
    assert applies.read_text().split() == [str(first)]
