"""Soak: 300 releases over 10 environments, driven through the HTTP API of two gunicorn
servers, run by three `python -m worker` processes, on PostgreSQL and a real Redis.

The hooks exit 0, 2 or 1 or run into their environment's (short) timeout; reviewers who
did not trigger the releases approve and reject the pending ones as they appear, racing
each other and the triggerer's withdrawals; a few queued releases are cancelled. Every hook
and release command appends "<release id> <what ran>" to a file, so at the end the test
knows exactly what ran. Then it checks, through the API: every release is terminal and
ended as its plan says; each audit trail is a path of SPEC §3; each pending release left
pending exactly once (one decision, or one withdrawal); one bot release per approval, which
took the slot straight from its parent; nothing ran twice; never two slot holders at once and
queues moved first in, first out; no answer was a 5xx, no process died or logged a traceback.

Only on PostgreSQL (conftest deselects it on SQLite); about 2-4 minutes on two cores.
"""
from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scripts.run_local import free_port, wait_for_port
from tests.helpers import SLOT_STATES, assert_one_slot_holder_at_a_time, make_repo

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]

ROOT = Path(__file__).resolve().parents[2]
RELEASES = 300
PROJECT = "soak"
HOOK_TIMEOUT = 3  # seconds, on the environments whose hooks may hang
DEADLINE = 360  # seconds for everything to settle once the last release is triggered

# Hooks and release commands run with the system's python3, not a shim on the PATH (a pyenv
# shim costs ~0.4 s a start and would make the soak a test of the shim).
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"

# name -> settings. e0-e7 run the hook (e6 and e7 with a short hook timeout; e5 has no release
# command), e8 is serial without the hook, e9 runs releases in parallel.
COMMAND = f'{PYTHON} deploy.py "$1"'
ENVIRONMENTS = {
    **{f"e{i}": {"release_command": COMMAND} for i in range(5)},
    "e5": {},
    "e6": {"release_command": COMMAND, "hook_timeout_seconds": HOOK_TIMEOUT},
    "e7": {"release_command": COMMAND, "hook_timeout_seconds": HOOK_TIMEOUT},
    "e8": {"release_command": COMMAND, "approval_workflow": False},
    "e9": {"release_command": COMMAND, "approval_workflow": False, "parallel_releases": True},
}
HOOKED = [name for name, settings in ENVIRONMENTS.items() if settings.get("approval_workflow", True)]
SERIAL = [name for name, settings in ENVIRONMENTS.items() if not settings.get("parallel_releases")]

TERMINAL = {"APPROVED", "REJECTED", "CANCELLED", "SUCCEEDED", "FAILED", "TIMED_OUT"}
# SPEC §3 as (from, to) pairs; None is "no state yet".
PATHS = {
    "RELEASE": {(None, "QUEUED"), ("QUEUED", "CANCELLED"), ("QUEUED", "READY"), ("QUEUED", "IN_PROGRESS"),
                ("READY", "IN_PROGRESS"), ("READY", "PENDING_APPROVAL"), ("READY", "FAILED"),
                ("PENDING_APPROVAL", "APPROVED"), ("PENDING_APPROVAL", "REJECTED"),
                ("PENDING_APPROVAL", "CANCELLED"), ("IN_PROGRESS", "SUCCEEDED"), ("IN_PROGRESS", "FAILED"),
                ("IN_PROGRESS", "TIMED_OUT")},
    "BOT": {(None, "IN_PROGRESS"), ("IN_PROGRESS", "SUCCEEDED"), ("IN_PROGRESS", "FAILED"),
            ("IN_PROGRESS", "TIMED_OUT")},
}

HOOK = '''import json
import os
import socket
import sys
import time

with open(sys.argv[1]) as handle:
    payload = json.load(handle)
outcome = payload["resources"][0]["resourceName"].split("-")[0]
with socket.create_connection(("127.0.0.1", RUNS)) as runs:  # the sandbox lets a run reach only the network
    runs.sendall(f"{payload['releaseId']} hook {outcome} {os.environ['RELEASE_ID']}\\n".encode())
if outcome == "timeout":
    time.sleep(60)
print(f"soak hook: {outcome}")
sys.exit({"exit0": 0, "exit2": 2, "exit1": 1}[outcome])
'''

DEPLOY = '''import json
import os
import socket
import sys

with open(sys.argv[1]) as handle:
    payload = json.load(handle)
outcome = payload["resources"][0]["resourceName"].split("-")[1]
with socket.create_connection(("127.0.0.1", RUNS)) as runs:  # the sandbox lets a run reach only the network
    runs.sendall(f"{payload['releaseId']} apply {outcome} {os.environ['RELEASE_ID']}\\n".encode())
print(f"soak apply: {outcome}")
sys.exit(0 if outcome == "ok" else 1)
'''


# -- HTTP ---------------------------------------------------------------------------------------

class Client:
    """JSON over HTTP as one persona, alternating between the web servers; every answer is kept."""

    def __init__(self, bases: list[str], token: str, answers: list):
        self.bases, self.token, self.answers = bases, token, answers
        self.turn = 0
        self.lock = threading.Lock()

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        with self.lock:
            base = self.bases[self.turn % len(self.bases)]
            self.turn += 1
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode(errors="replace")
        self.answers.append((method, path, status, text[:500]))
        try:
            return status, json.loads(text) if text else {}
        except ValueError:
            return status, {"text": text}

    def get(self, path: str) -> dict:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body


# -- processes ----------------------------------------------------------------------------------

class Processes:
    """The servers and workers of the soak, each in its own process group, logging to a file."""

    def __init__(self, directory: Path, env: dict[str, str]):
        self.directory, self.env = directory, env
        self.started: list[tuple[str, subprocess.Popen]] = []
        self.bases: list[str] = []  # the web servers' URLs

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.directory / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        log.close()
        self.started.append((name, process))
        return process

    def logs(self) -> dict[str, str]:
        return {name: (self.directory / f"{name}.log").read_text(errors="replace") for name, _ in self.started}

    def stop(self) -> None:
        for _, process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in self.started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


@pytest.fixture()
def stack(app_config, tmp_path):
    """Two gunicorn servers and three workers on the test's database and Redis; yields the base URLs."""
    ports = [free_port(0), free_port(0)]
    env = {**os.environ, "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": app_config["REDIS_URL"],
           "SECRET_KEY": "soak-test-secret-key", "RELEASEGATE_ENV": "production",
           "RELEASEGATE_INSTANCE": str(tmp_path / "instance"), "REPO_CACHE_DIR": app_config["REPO_CACHE_DIR"],
           "BASE_URL": f"http://127.0.0.1:{ports[0]}", "MAIL_SERVER": "", "HOOK_PYTHON": PYTHON,
           # Long enough that a loaded machine never starves a heartbeat into "worker lost".
           "WORKER_LOST_SECONDS": "20", "RECONCILE_SECONDS": "1"}
    processes = Processes(tmp_path, env)
    try:
        for index, port in enumerate(ports):
            # Two servers (as on two hosts), one sync worker each; no control socket in the shared ~/.gunicorn.
            processes.start(f"web{index}", [sys.executable, "-m", "gunicorn", "--workers", "1", "--timeout", "60",
                                            "--no-control-socket", "--bind", f"127.0.0.1:{port}", "wsgi:app"])
        for index in range(3):
            processes.start(f"worker{index}", [sys.executable, "-m", "worker"])
        for index, port in enumerate(ports):
            try:
                wait_for_port(port, 30)
            except SystemExit:
                pytest.fail(f"gunicorn did not start:\n{processes.logs()[f'web{index}'][-3000:]}")
        processes.bases = [f"http://127.0.0.1:{port}" for port in ports]
        yield processes
    finally:
        processes.stop()


# -- the plan -------------------------------------------------------------------------------------

def plan_releases(rng: random.Random) -> list[dict]:
    """What each release should do: its environment, hook outcome, apply outcome, who decides how."""
    plans = []
    for index in range(RELEASES):
        environment = f"e{index % len(ENVIRONMENTS)}"
        hooked = environment in HOOKED
        timeouts = ENVIRONMENTS[environment].get("hook_timeout_seconds") == HOOK_TIMEOUT
        hook = (rng.choices(["exit0", "exit2", "exit1", "timeout"], [45, 30, 12, 25 if timeouts else 0])[0]
                if hooked else "none")
        plans.append({
            "environment": environment, "hook": hook,
            "apply": rng.choices(["ok", "fail"], [85, 15])[0],
            # approve/reject: both reviewers do it; race: one approves while the other rejects;
            # withdraw: the triggerer withdraws while a reviewer rejects.
            "decide": rng.choice(["approve", "approve", "reject", "race", "withdraw"]) if hook == "exit2" else None,
            "cancel": rng.random() < 0.05,  # cancelled by the triggerer right after triggering
        })
    return plans


def resources_of(plan: dict, index: int) -> list[dict]:
    return [{"resourceType": "soak", "resourceName": f"{plan['hook']}-{plan['apply']}",
             "resourcePath": f"soak/{index}.json", "changeType": "UPDATE_IN_PLACE"}]


# -- the test -------------------------------------------------------------------------------------

def test_soak_300_releases_through_two_web_servers_and_three_workers(people, stack, tmp_path, tally):
    repo = make_repo(tmp_path / "repo", {
        f"{PROJECT}/pre_release_hooks/pre_release_hook.py": HOOK.replace("RUNS", str(tally.port)),
        "deploy.py": DEPLOY.replace("RUNS", str(tally.port)),
    })
    people.add("approver2", "approve_release")
    answers: list[tuple[str, str, int, str]] = []  # every HTTP answer of the soak
    admin, dev, approver, approver2, member = (Client(stack.bases, people.tokens[name], answers)
                                               for name in ("admin", "dev", "approver", "approver2", "member"))
    for client in (admin, dev, approver, approver2):
        assert client.get("/api/v1/health") == {"status": "ok"}

    status, body = admin.call("POST", "/api/v1/projects", {"name": PROJECT, "repo": str(repo)})
    assert status == 201, body
    for name, settings in ENVIRONMENTS.items():
        status, body = admin.call("POST", f"/api/v1/projects/{PROJECT}/environments",
                                  {"name": name, "release_stream": "SOAK", **settings})
        assert status == 201, body

    rng = random.Random(5)
    plans = plan_releases(rng)
    plan_of: dict[int, dict] = {}  # release id -> plan, as triggered
    actions: dict[int, list[tuple[str, str, int]]] = defaultdict(list)  # release id -> (who, action, status)
    lock = threading.Lock()
    failures: list[str] = []  # exceptions in the driver threads
    started = time.monotonic()

    def trigger(indexes: list[int]) -> None:
        for index in indexes:
            plan = plans[index]
            status, body = dev.call("POST", f"/api/v1/projects/{PROJECT}/environments/{plan['environment']}/releases",
                                    {"resources": resources_of(plan, index), "description": f"soak #{index}"})
            assert status == 202, body
            plan_of[body["id"]] = plan
            if plan["cancel"]:
                status, _ = dev.call("POST", f"/api/v1/releases/{body['id']}/cancel", {})
                with lock:
                    actions[body["id"]].append(("dev", "cancel", status))
            time.sleep(0.1)

    # Each pending release goes to every party that acts on it, all at about the same moment.
    inboxes = {name: queue.Queue() for name in ("approver", "approver2", "dev")}

    def watch(stop: threading.Event) -> None:
        seen: set[int] = set()
        while not stop.is_set():
            for environment in HOOKED:
                items = member.get(f"/api/v1/projects/{PROJECT}/environments/{environment}/releases"
                                   "?state=PENDING_APPROVAL&limit=5")["items"]
                for item in items:
                    plan = plan_of.get(item["id"])
                    if item["id"] in seen or plan is None:
                        continue
                    seen.add(item["id"])
                    parties = {"approve": [("approver", "approve"), ("approver2", "approve")],
                               "reject": [("approver", "reject"), ("approver2", "reject")],
                               "race": [("approver", "approve"), ("approver2", "reject")],
                               "withdraw": [("dev", "cancel"), ("approver2", "reject")],
                               }.get(plan["decide"], [("approver", "reject")])  # unplanned: fail closed
                    for party, action in parties:
                        inboxes[party].put((item["id"], action))
            stop.wait(0.3)

    def act(name: str, client: Client) -> None:
        while True:
            task = inboxes[name].get()
            if task is None:
                return
            release_id, action = task
            status, body = client.call("POST", f"/api/v1/releases/{release_id}/{action}", {"comment": f"soak {name}"})
            with lock:
                actions[release_id].append((name, action, status))

    def guarded(function, *args) -> None:
        try:
            function(*args)
        except BaseException as error:  # reported by the main thread
            failures.append(f"{function.__name__}: {error!r}")

    stop = threading.Event()
    threads = [threading.Thread(target=guarded, args=(trigger, list(range(offset, RELEASES, 3))), daemon=True)
               for offset in range(3)]
    threads.append(threading.Thread(target=guarded, args=(watch, stop), daemon=True))
    threads += [threading.Thread(target=guarded, args=(act, name, client), daemon=True)
                for name, client in (("approver", approver), ("approver2", approver2), ("dev", dev))]
    for thread in threads:
        thread.start()

    def everything(environment: str) -> list[dict]:
        return member.get(f"/api/v1/projects/{PROJECT}/environments/{environment}/releases?limit=500")["items"]

    try:
        for thread in threads[:3]:
            thread.join()
        triggered_in = time.monotonic() - started
        assert not failures, failures
        assert len(plan_of) == RELEASES
        deadline = time.monotonic() + DEADLINE
        while True:
            assert not failures, failures
            unsettled = [(item["id"], environment, item["state"]) for environment in ENVIRONMENTS
                         for item in everything(environment) if item["state"] not in TERMINAL]
            if not unsettled:
                break
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {name}\n{text[-3000:]}" for name, text in stack.logs().items())
                pytest.fail(f"{len(unsettled)} releases not terminal after {DEADLINE} s: {unsettled[:20]}\n{tails}")
            time.sleep(1)
    finally:
        stop.set()
        for inbox in inboxes.values():
            inbox.put(None)
    for thread in threads[3:]:
        thread.join(30)
    settled_in = time.monotonic() - started
    assert not failures, failures

    # -- what happened, read back through the API ----------------------------------------------------
    releases = {item["id"]: item for environment in ENVIRONMENTS for item in everything(environment)}
    with ThreadPoolExecutor(4) as pool:
        trails = dict(zip(releases, pool.map(lambda release_id: member.get(
            f"/api/v1/releases/{release_id}/events")["items"], releases), strict=True))
    lines = [line.split() for line in tally.lines]
    ran = Counter((release_id, what) for release_id, what, _outcome, _env_id in lines)
    outcome_ran = {(release_id, what): outcome for release_id, what, outcome, _env_id in lines}
    # The payload's releaseId is the release the hook or command ran for.
    assert [line for line in lines if line[0] != line[3]] == []

    # No answer was a server error, or any other surprise; every refusal says why.
    expected = {"GET": {200}, "POST": {201, 202, 200, 409}}
    assert [answer for answer in answers if answer[2] not in expected[answer[0]]] == []
    assert [answer for answer in answers if answer[2] == 409 and '"error"' not in answer[3]] == []
    # Nothing ran twice.
    assert [key for key, count in ran.items() if count > 1] == []

    bots = {release["parent_release_id"]: release for release in releases.values() if release["kind"] == "BOT"}
    assert len(bots) == sum(1 for release in releases.values() if release["kind"] == "BOT")
    assert len(releases) == RELEASES + len(bots)
    final_states = Counter()
    for release_id, release in releases.items():
        trail = trails[release_id]
        states = [event for event in trail if event["action"] == "state"]
        final_states[release["state"]] += 1
        context = (release_id, release["kind"], release["state"], [(e["from"], e["to"]) for e in states])
        # The audit trail: complete, in order, a path of SPEC §3 ending in the release's state.
        assert [event["id"] for event in trail] == sorted(event["id"] for event in trail), context
        assert [event["at"] for event in trail] == sorted(event["at"] for event in trail), context
        previous = None
        for event in states:
            assert event["from"] == previous and (previous, event["to"]) in PATHS[release["kind"]], context
            previous = event["to"]
        assert previous == release["state"] and previous in TERMINAL, context
        if release["kind"] == "RELEASE":
            assert (states[0]["by"], states[0]["via"]) == ("dev", "api"), context
        visited = {event["to"] for event in states}
        environment = release["environment"]
        command = "release_command" in ENVIRONMENTS[environment]
        # What ran: a hook exactly when the release held the slot through READY; a release command
        # exactly when it was IN_PROGRESS in an environment that has one. Never anything twice.
        assert ran[(str(release_id), "hook")] == (1 if "READY" in visited else 0), context
        assert ran[(str(release_id), "apply")] == (1 if "IN_PROGRESS" in visited and command else 0), context

        if release["kind"] == "BOT":
            parent = releases[release["parent_release_id"]]
            assert parent["state"] == "APPROVED" and parent["bot_release_id"] == release_id, context
            assert release["triggered_by"] == parent["decisions"][0]["by"], context
            assert release["resources"] == parent["resources"] and release["commit"] == parent["commit"], context
            expected = "SUCCEEDED" if not command or parent["resources"][0]["resourceName"].endswith("-ok") \
                else "FAILED"
            assert release["state"] == expected, context
            continue

        plan = plan_of[release_id]
        assert environment == plan["environment"] and release["triggered_by"] == "dev", context
        attempts = actions.get(release_id, [])
        cancelled_queued = ("dev", "cancel", 200) in attempts and "READY" not in visited \
            and "IN_PROGRESS" not in visited
        if plan["cancel"] and cancelled_queued:
            assert release["state"] == "CANCELLED" and visited == {"QUEUED", "CANCELLED"}, context
            continue
        # The hook ran for every release of an environment with the approval workflow, and only there.
        assert ("READY" in visited) == (environment in HOOKED), context
        if "READY" in visited:
            assert outcome_ran[(str(release_id), "hook")] == plan["hook"], context
        if "IN_PROGRESS" in visited and command:
            assert outcome_ran[(str(release_id), "apply")] == plan["apply"], context
        applied = "SUCCEEDED" if not command or plan["apply"] == "ok" else "FAILED"
        if plan["hook"] == "none" or plan["hook"] == "exit0":
            assert release["state"] == applied and "PENDING_APPROVAL" not in visited, context
        elif plan["hook"] == "exit1":
            assert release["state"] == "FAILED" and release["hook"]["exit_code"] == 1, context
        elif plan["hook"] == "timeout":
            assert release["state"] == "FAILED" and "timed out" in release["error"], context
        else:
            # Left PENDING_APPROVAL exactly once: one action succeeded, every other one got 409.
            assert "PENDING_APPROVAL" in visited, context
            won = [attempt for attempt in attempts if attempt[2] == 200]
            assert len(won) == 1 and all(attempt[2] == 409 for attempt in attempts if attempt not in won), \
                (context, attempts)
            who, action, _ = won[0]
            assert release["state"] == {"approve": "APPROVED", "reject": "REJECTED", "cancel": "CANCELLED"}[action], \
                (context, attempts)
            assert (states[-1]["by"], states[-1]["via"]) == (who, "api"), context
            if action == "cancel":
                assert who == "dev" and release["decisions"] == [], context
            else:
                assert [(d["by"], d["decision"], d["via"]) for d in release["decisions"]] == [
                    (who, action.upper(), "api")], context
            assert (release["bot_release_id"] is not None) == (action == "approve"), context
            continue
        assert all(attempt[2] == 409 for attempt in attempts), (context, attempts)
        assert release["decisions"] == [] and release["bot_release_id"] is None, context
    # One bot release per approval.
    assert sorted(bots) == sorted(rid for rid, release in releases.items() if release["state"] == "APPROVED")

    # Replaying each serial environment's audit trail in commit order: never two slot holders at
    # once; the queue moves first in, first out; an approval hands the slot straight to its bot.
    for environment in SERIAL:
        events = sorted((event["id"], release_id, event["from"], event["to"])
                        for release_id, release in releases.items() if release["environment"] == environment
                        for event in trails[release_id] if event["action"] == "state")
        assert_one_slot_holder_at_a_time((release_id, to_state) for _, release_id, _, to_state in events)
        taking = [(release_id, from_state) for _, release_id, from_state, to_state in events
                  if from_state in (None, "QUEUED") and to_state in SLOT_STATES]
        dispatched = [release_id for release_id, from_state in taking if from_state == "QUEUED"]
        assert dispatched == sorted(dispatched), environment
        handed_to = None
        for _, release_id, from_state, to_state in events:
            if to_state == "APPROVED":
                handed_to = releases[release_id]["bot_release_id"]
            elif from_state in (None, "QUEUED") and to_state in SLOT_STATES:
                assert handed_to in (None, release_id), (environment, release_id, handed_to)
                handed_to = None
        assert handed_to is None, (environment, handed_to)

    # Nothing is left over: no slot holder, no failed job, no traceback in any process's log.
    for environment in ENVIRONMENTS:
        found = member.get(f"/api/v1/projects/{PROJECT}/environments/{environment}")
        assert found["active"] == [] and found["queue"] == [], found
    assert [name for name, process in stack.started if process.poll() is not None] == []
    logs = stack.logs()
    assert {name: text.count("Traceback") for name, text in logs.items() if "Traceback" in text} == {}, \
        "\n".join(text[text.index("Traceback") - 500:][:4000] for text in logs.values() if "Traceback" in text)

    outcomes = Counter(plan["hook"] for plan in plan_of.values())
    lost_races = sum(1 for attempts in actions.values() for attempt in attempts if attempt[2] == 409)
    print(f"\nsoak: {RELEASES} releases + {len(bots)} bot releases; triggered in {triggered_in:.0f} s, "
          f"settled in {settled_in:.0f} s; hooks {dict(outcomes)}; final states {dict(final_states)}; "
          f"{len(answers)} HTTP answers, {lost_races} decisions or cancels refused with 409")
