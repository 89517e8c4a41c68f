"""scripts/releasegate-ci against the live app: served over HTTP on a free port with a real
`python -m worker` beside it, the script run by Debian's python3 as a pipeline would run it.
Every exit code: 0 succeeded, 1 failed or rejected, 2 bad usage or refused, 3 --timeout."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser_support import serve
from tests.helpers import CHANGE, git, release, state, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "releasegate-ci"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable  # Debian's, as CI has
GITHUB_JOB = {"GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "9001", "GITHUB_RUN_ATTEMPT": "1",
              "GITHUB_JOB": "deploy"}
FREEZE = {"from": "2020-01-01T00:00:00Z", "to": "2099-01-01T00:00:00Z", "reason": "year-end freeze"}


class Gate:
    """The live server's address and a way to run the script against it as a persona."""

    def __init__(self, base: str, people, changes: Path) -> None:
        self.base = base
        self.people = people
        self.changes = changes

    def environ(self, who: str, **extra: str) -> dict[str, str]:
        # Built from nothing: a test run inside GitHub Actions must not lend the script its job.
        return {"PATH": os.environ["PATH"], "RELEASEGATE_URL": self.base,
                "RELEASEGATE_TOKEN": self.people.tokens[who], **extra}

    def argv(self, env: str, *options: str) -> list[str]:
        """The script's command line; the test's resource list unless `options` name what to release."""
        source = [] if {"--resources", "--terraform-plan"} & set(options) else ["--resources", str(self.changes)]
        return [PYTHON, str(SCRIPT), "trigger", "--env", env, *source, "--interval", "0.2", *options]

    def run(self, env: str, *options: str, who: str = "dev", stdin: str | None = None,
            **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(env, *options), env=self.environ(who, **extra), capture_output=True,
                              text=True, timeout=60, input=stdin)

    def start(self, env: str, *options: str, who: str = "dev") -> subprocess.Popen:
        return subprocess.Popen(self.argv(env, *options), env=self.environ(who), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)


@pytest.fixture()
def gate(app, people, shop, start_worker, tmp_path):
    """shop/qa (its hook passes) and shop/prod (its hook asks for approval), served live."""
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps(CHANGE))
    start_worker()
    with serve(app) as base:
        yield Gate(base, people, changes)


def output(finished) -> str:
    return finished.stdout + (finished.stderr or "")


def released_ids(api, path: str = "shop/qa") -> list[int]:
    project, environment = path.split("/")
    listed = api("member").get(f"/api/v1/projects/{project}/environments/{environment}/releases").json
    return [item["id"] for item in listed["items"]]


def test_the_script_parses_as_python_3_9():
    ast.parse(SCRIPT.read_text(), feature_version=(3, 9))
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n") and os.access(SCRIPT, os.X_OK)


def test_a_qa_release_that_succeeds_exits_0_and_the_same_job_again_triggers_nothing(gate, api, people):
    finished = gate.run("shop/qa", "--wait", "--description", "api 1.4", **GITHUB_JOB)
    said = output(finished)
    assert finished.returncode == 0, said
    [release_id] = released_ids(api)
    assert said.splitlines()[0] == f"releasegate: release {release_id} of shop/qa: {gate.base}/releases/{release_id}"
    assert "the pre-release hook exited 0 (passed)" in said
    assert "applying 1 changes" in said  # the tail of the command's output
    assert said.rstrip().endswith(f"release {release_id}: SUCCEEDED: {gate.base}/releases/{release_id}")
    assert people.tokens["dev"] not in said
    assert release(api, release_id)["description"] == "api 1.4"

    again = gate.run("shop/qa", "--wait", **GITHUB_JOB)  # the job's step run once more
    assert again.returncode == 0, output(again)
    assert f"release {release_id} of shop/qa (this job had triggered it already)" in again.stdout
    assert released_ids(api) == [release_id]

    next_attempt = gate.run("shop/qa", **{**GITHUB_JOB, "GITHUB_RUN_ATTEMPT": "2"})  # "Re-run jobs": a new release
    assert next_attempt.returncode == 0, output(next_attempt)
    assert len(released_ids(api)) == 2


def test_a_release_whose_hook_fails_exits_1_with_the_end_of_the_hook_output(gate, api, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "echo 'no deploys on Fridays'\nexit 1\n"})
    finished = gate.run("svc/env", "--wait")
    said = output(finished)
    assert finished.returncode == 1, said
    assert "the pre-release hook exited 1 (the release fails)" in said
    assert "no deploys on Fridays" in said
    assert said.rstrip().endswith(f": FAILED: {gate.base}/releases/{released_ids(api, 'svc/env')[0]}")


def test_a_terraform_plan_on_standard_input_is_triggered_and_without_wait_exits_0_at_once(gate, api, shop):
    commit = git(shop, "rev-parse", "HEAD")
    plan = {"format_version": "1.2", "resource_changes": [
        {"address": "aws_s3_bucket.logs", "type": "aws_s3_bucket", "name": "logs", "change": {"actions": ["create"]}}]}
    token = gate.people.tokens["dev"]
    finished = gate.run("shop/qa", "--terraform-plan", "-", "--ref", commit, "--url", f"{gate.base}/api/v1/",
                        "--token", token, stdin=json.dumps(plan), RELEASEGATE_TOKEN="", RELEASEGATE_URL="")
    assert finished.returncode == 0, output(finished)
    [release_id] = released_ids(api)
    assert finished.stdout == f"releasegate: release {release_id} of shop/qa: {gate.base}/releases/{release_id}\n"
    triggered = release(api, release_id)
    assert triggered["commit"] == commit
    assert [(r["resourcePath"], r["changeType"]) for r in triggered["resources"]] == [("aws_s3_bucket.logs", "CREATE")]


def wait_for_pending(api, path: str = "shop/prod") -> int:
    def pending():
        ids = released_ids(api, path)
        return ids and state(api, ids[0]) == "PENDING_APPROVAL" and ids[0]

    return wait_for(pending, timeout=30)


def read_until(process: subprocess.Popen, text: str) -> str:
    """What the script has said up to the line holding `text` (it ends by --timeout at the latest)."""
    said = ""
    while text not in said:
        line = process.stdout.readline()
        assert line, f"the script ended before saying {text!r}:\n{said}"
        said += line
    return said


def test_a_release_approved_while_the_script_waits_exits_0_once_its_bot_release_succeeds(gate, api):
    waiting = gate.start("shop/prod", "--wait", "--timeout", "60")
    try:
        said = read_until(waiting, "approvals default 0/1")
        release_id = released_ids(api, "shop/prod")[0]
        response = api("approver").post(f"/api/v1/releases/{release_id}/approve", json={"comment": "ship it"})
        assert response.status_code == 200, response.json
        said += waiting.communicate(timeout=60)[0]
    finally:
        waiting.kill()
    assert waiting.returncode == 0, said
    bot_id = release(api, release_id)["bot_release_id"]
    page = f"{gate.base}/releases/{release_id}"
    assert f"release {release_id}: PENDING_APPROVAL, waiting for approval: {page}" in said
    assert f"release {release_id}: the pre-release hook exited 2 (asks for approval)" in said
    assert f"release {release_id}: approvals default 0/1 (anyone who may approve)" in said
    assert f"release {release_id}: approved by approver: ship it" in said
    assert f"carried out by bot release {bot_id}: {gate.base}/releases/{bot_id}" in said
    assert "applying 1 changes" in said
    assert said.rstrip().endswith(f"release {bot_id}: SUCCEEDED: {gate.base}/releases/{bot_id}")


def test_a_release_rejected_while_the_script_waits_exits_1(gate, api):
    waiting = gate.start("shop/prod", "--wait", "--timeout", "60")
    try:
        said = read_until(waiting, "approvals default 0/1")
        release_id = released_ids(api, "shop/prod")[0]
        response = api("approver").post(f"/api/v1/releases/{release_id}/reject", json={"comment": "not on a Friday"})
        assert response.status_code == 200, response.json
        said += waiting.communicate(timeout=60)[0]
    finally:
        waiting.kill()
    assert waiting.returncode == 1, said
    assert f"release {release_id}: rejected by approver: not on a Friday" in said
    assert "exit 2: PROD needs approval" in said  # the end of the hook's output says why it asked
    assert said.rstrip().endswith(f"release {release_id}: REJECTED: {gate.base}/releases/{release_id}")


def test_the_timeout_exits_3_while_the_release_waits_saying_where_it_stands(gate, api, new_environment):
    response = api("dev").post("/api/v1/projects/shop/environments/prod/releases", json={"resources": CHANGE},
                               headers={"Idempotency-Key": "build-77"})
    assert response.status_code == 202, response.json
    pending = wait_for_pending(api)
    finished = gate.run("shop/prod", "--wait", "--timeout", "0.5", "--idempotency-key", "build-77")
    assert finished.returncode == 3, output(finished)
    assert f"Gave up waiting (--timeout): release {pending} is still PENDING_APPROVAL" in finished.stderr

    queued = gate.run("shop/prod", "--wait", "--timeout", "0.5")
    assert queued.returncode == 3, output(queued)
    assert f"QUEUED, number 1 in the queue, behind release {pending} (PENDING_APPROVAL)" in queued.stdout

    new_environment({"README.md": "nothing to run\n"}, approval_workflow=False, freezes=[FREEZE])
    frozen = gate.run("svc/env", "--wait", "--timeout", "0.5")
    assert frozen.returncode == 3, output(frozen)
    assert "SCHEDULED, frozen until 2099-01-01T00:00:00Z \u2014 year-end freeze" in frozen.stdout


def test_bad_usage_and_a_refused_trigger_exit_2_with_a_sentence(gate, api, tmp_path):
    missing_env = subprocess.run([PYTHON, str(SCRIPT), "trigger", "--resources", str(gate.changes)],
                                 env=gate.environ("dev"), capture_output=True, text=True, timeout=30)
    assert missing_env.returncode == 2 and "--env" in missing_env.stderr

    no_token = gate.run("shop/qa", RELEASEGATE_TOKEN="")
    assert no_token.returncode == 2 and "set RELEASEGATE_TOKEN" in no_token.stderr

    both = gate.run("shop/qa", "--resources", str(gate.changes), "--terraform-plan", str(gate.changes))
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    (tmp_path / "plan.json").write_text("{not json")
    broken = gate.run("shop/qa", "--terraform-plan", str(tmp_path / "plan.json"))
    assert broken.returncode == 2 and "is not valid JSON" in broken.stderr

    unknown = gate.run("shop/nope", "--wait")
    assert unknown.returncode == 2, output(unknown)
    assert "Releasegate refused POST /projects/shop/environments/nope/releases (404): " \
           "Environment shop/nope does not exist." in unknown.stderr

    forbidden = gate.run("shop/qa", "--wait", who="member")
    assert forbidden.returncode == 2 and "(403)" in forbidden.stderr
    assert released_ids(api) == []
    assert gate.people.tokens["member"] not in output(forbidden)


class FlakyServer:
    """Answers each request with the next of `answers` (status, body), counting them."""

    def __init__(self, answers: list[tuple[int, object]]) -> None:
        self.answers = answers
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.seen.append(self.headers["Idempotency-Key"])
                status, body = outer.answers[min(len(outer.seen), len(outer.answers)) - 1]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_against(server: FlakyServer, changes: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(SCRIPT), "trigger", "--env", "shop/qa", "--resources", str(changes)],
                          env={"PATH": os.environ["PATH"], "RELEASEGATE_URL": server.base,
                               "RELEASEGATE_TOKEN": "a-ci-secret-token", "CI_PROJECT_ID": "12", "CI_JOB_ID": "345"},
                          capture_output=True, text=True, timeout=30)


def test_a_503_is_tried_again_with_the_same_key_and_a_4xx_never(tmp_path):
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps(CHANGE))
    flaky = FlakyServer([(503, {"error": "The database is unavailable right now; try again in a moment."}),
                         (202, {"id": 7, "state": "QUEUED", "warnings": []})])
    try:
        finished = run_against(flaky, changes)
    finally:
        flaky.close()
    assert finished.returncode == 0, output(finished)
    assert flaky.seen == ["gitlab:12:345", "gitlab:12:345"]
    assert "the server answered 503; trying again in 1 s" in finished.stderr
    assert f"release 7 of shop/qa: {flaky.base}/releases/7" in finished.stdout

    refusing = FlakyServer([(422, {"error": "The resource list is empty."})])
    try:
        finished = run_against(refusing, changes)
    finally:
        refusing.close()
    assert finished.returncode == 2 and "(422): The resource list is empty." in finished.stderr
    assert len(refusing.seen) == 1
    assert "a-ci-secret-token" not in output(finished)


def test_an_address_that_is_not_releasegate_exits_2_saying_so(tmp_path):
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps(CHANGE))
    elsewhere = FlakyServer([(200, "<html>Sign in to the proxy</html>")])
    try:
        finished = run_against(elsewhere, changes)
    finally:
        elsewhere.close()
    assert finished.returncode == 2, output(finished)
    assert f"is {elsewhere.base} Releasegate's address?" in finished.stderr and "Traceback" not in finished.stderr


def test_output_from_the_server_never_becomes_a_ci_log_command_or_an_escape_sequence(gate, api, new_environment):
    """Hook output, comments and reasons are written by others than the job's owner: on GitHub
    Actions a line starting with "::" is a workflow command, and ANSI escapes can hide lines."""
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh":
                     "echo '::add-mask::releasegate'\nprintf '\\033[2Kerased\\n'\nexit 1\n"})
    finished = gate.run("svc/env", "--wait", GITHUB_ACTIONS="true")
    said = output(finished)
    assert finished.returncode == 1, said
    assert not [line for line in said.splitlines() if line.startswith("::")], said
    assert "\x1b" not in said and "\\x1b[2Kerased" in said
    assert "  | ::add-mask::releasegate" in said


class Redirecting:
    """An address that answers every request with a redirect to `target` (as a moved host or a
    sign-in proxy would), or, without a target, records the Authorization of what reaches it."""

    def __init__(self, target: str | None = None) -> None:
        self.seen: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.seen.append(self.headers.get("Authorization"))
                self.send_response(302 if target else 404)
                if target:
                    self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_redirect_is_never_followed_with_the_token(tmp_path):
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps(CHANGE))
    collector = Redirecting()  # would see the token, if it were sent on (a POST or the GET it becomes)
    redirect = Redirecting(f"{collector.base}/steal")
    try:
        finished = run_against(redirect, changes)
    finally:
        redirect.close()
        collector.close()
    assert finished.returncode == 2, output(finished)
    assert f"redirects to {collector.base}/steal; the token is not sent on" in finished.stderr
    assert collector.seen == [] and "a-ci-secret-token" not in output(finished)
