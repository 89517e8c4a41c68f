"""Hooks that misbehave: huge output, output after closing stdout, odd bytes, a hook
that deletes its own working directory. The release ends as the contract says."""
from __future__ import annotations

from tests.helpers import release, trigger

HOOK = "svc/pre_release_hooks/pre_release_hook.sh"


def test_fifty_megabytes_of_output_are_capped_and_the_release_is_fine(api, new_environment, run_jobs):
    new_environment({HOOK: "head -c 52428800 /dev/zero | tr '\\0' x\nexit 2\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "PENDING_APPROVAL"
    assert data["hook"]["truncated"] is True
    assert len(data["hook"]["output"]) < 300 * 1024 and "[output truncated" in data["hook"]["output"]


def test_a_hook_that_closes_stdout_and_keeps_running_is_not_waited_for(api, new_environment, run_jobs):
    new_environment({HOOK: "echo before\nexec >&- 2>&-\n(sleep 60) &\nexit 0\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "SUCCEEDED" and "before" in data["hook"]["output"]


def test_non_utf8_output_is_kept_readably(api, new_environment, run_jobs):
    new_environment({HOOK: "printf 'caf\\xe9 \\xff\\xfe ok\\n'\nexit 0\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "SUCCEEDED" and "ok" in data["hook"]["output"] and "\ufffd" in data["hook"]["output"]


def test_a_hook_that_deletes_its_own_working_directory_still_decides(api, new_environment, run_jobs):
    new_environment({HOOK: 'rm -rf "$(pwd)"\necho gone\nexit 2\n'})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "PENDING_APPROVAL" and "gone" in data["hook"]["output"]
