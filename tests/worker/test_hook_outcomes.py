"""What the pre-release hook's exit, failure or absence does to a release."""
from __future__ import annotations

import re

from tests.helpers import commit_files, git, processes_running, release, trigger, wait_for, watchdog

HOOK_DIR = "svc/pre_release_hooks"






def test_shell_hook_exit_0_proceeds_and_exit_2_waits(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": 'echo "stream=$(grep -o PROD "$1" | head -1)"\n'
                                                       'grep -q \'"releaseStream": "PROD"\' "$1" && exit 2\nexit 0\n'})
    first = trigger(api)
    run_jobs()
    assert release(api, first)["state"] == "SUCCEEDED"
    assert release(api, first)["hook"]["path"] == f"{HOOK_DIR}/pre_release_hook.sh"
    api("admin").patch("/api/v1/projects/svc/environments/env", json={"release_stream": "PROD"})
    second = trigger(api)
    run_jobs()
    assert release(api, second)["state"] == "PENDING_APPROVAL"


def test_python_hook_wins_over_shell_hook(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.py": "import sys\nprint('python hook')\nsys.exit(2)\n",
                     f"{HOOK_DIR}/pre_release_hook.sh": "echo shell hook\nexit 0\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "PENDING_APPROVAL"
    assert "python hook" in data["hook"]["output"]


def test_exit_1_fails_the_release(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.py": "import sys\nprint('no way')\nsys.exit(1)\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED"
    assert data["hook"]["exit_code"] == 1
    assert "exited 1" in data["error"]


def test_missing_hook_fails_with_a_message_never_pending(api, new_environment, run_jobs):
    new_environment({"README.md": "no hook here\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED"
    assert "No pre-release hook was found" in data["error"]
    assert "svc/pre_release_hooks/pre_release_hook.py" in data["error"]


def test_python_syntax_error_fails_with_a_message(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.py": "import sys\ndef broken(:\n    sys.exit(0)\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED"
    assert "syntax" in data["error"].lower() and "line 2" in data["error"]


def test_bash_syntax_error_fails_before_running_any_line(api, new_environment, run_jobs, tally):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": f"{tally.send('ran')}\nif then fi (\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED"
    assert "syntax" in data["error"].lower()
    assert tally.lines == []


def test_hook_past_its_timeout_is_killed_with_its_grandchildren(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh":
                     "(trap '' TERM; sleep 4242.11) &\nsetsid sleep 4242.11 &\nsleep 4242.11\n"},
                    hook_timeout_seconds=1)
    release_id = trigger(api)
    # The hook sleeps for ever: the run ends only because its 1 s timeout killed it. Should the
    # timeout never fire, a watchdog with a generous deadline kills the sleeps itself, and the
    # release fails without "timed out", instead of hanging the suite.
    with watchdog("sleep 4242.11"):
        run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED"
    assert "timed out" in data["error"]
    wait_for(lambda: processes_running("sleep 4242.11") == [], timeout=30)


def test_hook_sees_only_the_allowlisted_environment(api, new_environment, run_jobs, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "app-secret-value")
    monkeypatch.setenv("DATABASE_URL", "postgresql://secret")
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "env | sort\n"})
    api("admin").put("/api/v1/projects/svc/environments/env/variables/REGION",
                     json={"value": "eu-west", "for_hooks": True})
    api("admin").put("/api/v1/projects/svc/environments/env/variables/DEPLOY_KEY",
                     json={"value": "release-only", "secret": True})
    release_id = trigger(api)
    run_jobs()
    output = release(api, release_id)["hook"]["output"]
    names = {line.split("=", 1)[0] for line in output.splitlines() if "=" in line}
    assert {"PATH", "HOME", "RELEASE_ID", "PROJECT_NAME", "ENVIRONMENT_NAME", "RELEASE_STREAM"} <= names
    assert "REGION=eu-west" in output
    assert "app-secret-value" not in output and "postgresql://secret" not in output
    assert "release-only" not in output and "DEPLOY_KEY" not in names
    assert not names & {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "MAIL_PASSWORD"}


def test_release_command_gets_variables_and_secrets_are_masked(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"},
                    release_command='echo "key=$DEPLOY_KEY payload=$(basename $1) $(basename $RELEASE_PAYLOAD)"')
    api("admin").put("/api/v1/projects/svc/environments/env/variables/DEPLOY_KEY",
                     json={"value": "s3cr3t-value", "secret": True})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "SUCCEEDED"
    assert "key=****" in data["execution"]["output"]
    assert "payload=payload.json payload.json" in data["execution"]["output"]
    assert "s3cr3t-value" not in str(data)
    variables = api("admin").get("/api/v1/projects/svc/environments/env").json["variables"]
    assert variables == [{"name": "DEPLOY_KEY", "secret": True, "for_hooks": False, "value": None}]


def test_failing_release_command_fails_and_slow_one_times_out(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"}, release_command="echo nope; exit 3")
    failed = trigger(api)
    run_jobs()
    assert release(api, failed)["state"] == "FAILED"
    assert release(api, failed)["execution"]["exit_code"] == 3
    api("admin").patch("/api/v1/projects/svc/environments/env",
                       json={"release_command": "sleep 30", "release_timeout_seconds": 1})
    slow = trigger(api)
    run_jobs()
    assert release(api, slow)["state"] == "TIMED_OUT"


def test_no_release_command_succeeds_and_says_nothing_ran(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "SUCCEEDED"
    assert "nothing was run" in data["execution"]["output"]


def test_a_branch_whose_hook_differs_from_the_hook_ref_needs_approval(api, new_environment, run_jobs):
    repo = new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "echo strict; exit 2\n"})
    git(repo, "checkout", "-q", "-b", "permissive")
    commit_files(repo, {f"{HOOK_DIR}/pre_release_hook.sh": "echo lenient; exit 0\n"})
    git(repo, "checkout", "-q", "main")
    # The hook ref's own hook says 0 here, but the branch carries a different one.
    commit_files(repo, {f"{HOOK_DIR}/pre_release_hook.sh": "echo main hook; exit 0\n"})
    release_id = trigger(api, ref="permissive")
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "PENDING_APPROVAL"
    assert "main hook" in data["hook"]["output"]  # the hook ref's hook ran, not the branch's
    assert "differs from the one at the hook ref" in data["hook"]["output"]
    assert data["hook"]["exit_code"] == 0


def test_a_crashing_hook_on_a_differing_folder_fails_saying_only_what_happened(api, web, new_environment,
                                                                             run_jobs):
    """Exit 1 fails the release; the note that a differing hook folder needs approval belongs to
    releases that wait for one, not to a FAILED release. The error quotes the hook's last line."""
    repo = new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "echo checking\necho 'no database named orders' >&2\n"
                                                               "exit 1\n"})
    git(repo, "checkout", "-q", "-b", "other")
    commit_files(repo, {f"{HOOK_DIR}/helper.sh": "true\n"})
    release_id = trigger(api, ref="other")
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED" and data["hook"]["exit_code"] == 1
    assert "needs approval" not in data["hook"]["output"] and "differs" not in data["hook"]["output"]
    assert data["error"] == "The pre-release hook exited 1; its last line: \u201cno database named orders\u201d"
    banner = re.search(r'<div class="message message-error" role="alert">(.*?)</div>',
                       web("member").get(f"/releases/{release_id}").text).group(1)
    assert banner == "<strong>Error:</strong> " + data["error"]


def test_a_wait_that_fails_on_a_differing_folder_never_says_it_needs_approval(api, new_environment, run_jobs):
    """Exit 2 with a verdict that cannot be read fails the release: the differing folder is not
    then a reason to wait, and the stored output must not say it is."""
    repo = new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "echo '{not json' > \"$RELEASE_VERDICT\"\nexit 2\n"})
    git(repo, "checkout", "-q", "-b", "other")
    commit_files(repo, {f"{HOOK_DIR}/helper.sh": "true\n"})
    release_id = trigger(api, ref="other")
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED" and "is not valid JSON" in data["error"]
    assert "needs approval" not in data["hook"]["output"]


def test_an_unknown_ref_fails_the_release_naming_it(api, new_environment, run_jobs):
    new_environment({f"{HOOK_DIR}/pre_release_hook.sh": "exit 0\n"})
    release_id = trigger(api, ref="no-such-branch")
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED"
    assert "no-such-branch" in data["error"]
