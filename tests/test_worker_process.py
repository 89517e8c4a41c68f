"""The real `python -m worker` process: killed mid-hook, its hook dies and the release fails."""
from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.helpers import processes_running, release, trigger, wait_for
from webapp.running.runner import WORK_ROOT

ROOT = Path(__file__).resolve().parent.parent


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
    worker.wait(5)
    wait_for(lambda: processes_running("sleep 4242.31") == [], timeout=5)
    leftovers = list(WORK_ROOT.glob(f"{worker.pid}-*"))
    assert leftovers  # the killed worker could not clean up its workspace…

    start_worker()
    lost_at = time.monotonic()
    wait_for(lambda: release(api, first)["state"] == "FAILED", timeout=15)
    assert "worker lost" in release(api, first)["error"]
    assert time.monotonic() - lost_at < 3 + 1 + 5
    wait_for(lambda: release(api, second)["state"] == "SUCCEEDED", timeout=20)
    assert tally.lines == [str(first), str(second)]  # nothing ran twice
    assert not any(path.exists() for path in leftovers)  # …so the next worker swept it


def test_worker_killed_mid_apply_is_not_run_again(api, new_environment, start_worker, tally):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"},
                    release_command=f'{tally.send()}; setsid sleep 4242.32 & sleep 4242.32')
    first = trigger(api)
    worker = start_worker()
    wait_for(lambda: len(processes_running("sleep 4242.32")) >= 2, timeout=30)
    worker.send_signal(signal.SIGKILL)
    worker.wait(5)
    wait_for(lambda: processes_running("sleep 4242.32") == [], timeout=5)
    start_worker()
    wait_for(lambda: release(api, first)["state"] == "FAILED", timeout=15)
    assert "worker lost" in release(api, first)["error"]
    time.sleep(2)  # a re-run would have sent again by now
    assert tally.lines == [str(first)]
