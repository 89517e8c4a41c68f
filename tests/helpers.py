"""Test building blocks: real git repositories with real hook scripts."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@localhost",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@localhost"}

# Written like the documented sample (prints every payload field, exits 2 for PROD),
# in our own words.
SAMPLE_LIKE_HOOK = '''import json
import sys

if len(sys.argv) != 2:
    print("usage: pre_release_hook.py PAYLOAD")
    sys.exit(1)
with open(sys.argv[1]) as handle:
    data = json.load(handle)
print(f"Environment Name: {data.get('environmentName')}")
print(f"Release Stream: {data.get('releaseStream')}")
print("Resources:")
for item in data.get("resources", []):
    print(f"  - Resource Type: {item.get('resourceType')}")
    print(f"    Resource Name: {item.get('resourceName')}")
    print(f"    Resource Path: {item.get('resourcePath')}")
    print(f"    Change Type: {item.get('changeType')}")
if data.get("releaseStream") == "PROD":
    print("exit 2: PROD needs approval")
    sys.exit(2)
'''


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True,
                            capture_output=True, text=True)
    return result.stdout.strip()


def make_repo(path: Path, files: dict[str, str], message: str = "initial") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    return commit_files(path, files, message)


def commit_files(repo: Path, files: dict[str, str | None], message: str = "change") -> Path:
    for name, content in files.items():
        target = repo / name
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        if name.endswith(".sh"):
            target.chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return repo


def wait_until(condition: Callable[[], object], timeout: float = 30.0) -> bool:
    """Whether `condition()` came true within `timeout` seconds (wait_for() raises instead). The
    deadline only ends a test that fails: a loaded machine (CI, mutmut beside it) must not."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def gone(pid: int) -> bool:
    """Whether no process `pid` exists any more (a zombie still counts as there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_for(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


CHANGE = [{"resourceType": "service", "resourceName": "api", "resourcePath": "api.json", "changeType": "CREATE"}]


def trigger(api, who: str = "dev", *, path: str = "svc/env", resources: list | None = None, **body) -> int:
    """Trigger a release through the API as `who`; returns its id."""
    project, environment = path.split("/")
    response = api(who).post(f"/api/v1/projects/{project}/environments/{environment}/releases",
                             json={"resources": CHANGE if resources is None else resources, **body})
    assert response.status_code == 202, response.json
    return response.json["id"]


def release(api, release_id: int) -> dict:
    """The release as a read-only member sees it in the API."""
    return api("member").get(f"/api/v1/releases/{release_id}").json


def state(api, release_id: int) -> str:
    return release(api, release_id)["state"]


SLOT_STATES = ("READY", "PENDING_APPROVAL", "SCHEDULED", "IN_PROGRESS")


def assert_one_slot_holder_at_a_time(transitions: Iterable[tuple[int, str]]) -> None:
    """Replay (release id, new state) audit events of one serial environment in commit order:
    never two releases in a slot-holding state at once."""
    holding: set[int] = set()
    for release_id, to_state in transitions:
        if to_state in SLOT_STATES:
            holding.add(release_id)
        else:
            holding.discard(release_id)
        assert len(holding) <= 1, holding


def processes_running(marker: str) -> list[int]:
    """Pids of the processes whose command line contains `marker` (e.g. a unique `sleep 4242.17`),
    seen from the host: a sandboxed process has another pid inside its box."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if marker in cmdline and not zombie:
            found.append(int(entry.name))
    return found


@contextmanager
def watchdog(marker: str, seconds: float = 60) -> Iterator[None]:
    """For a test of a kill (a timeout, an abort): should the kill never come, the processes
    whose command line holds `marker` are killed after a generous `seconds`, so the run ends in
    a failed assertion instead of hanging the suite."""
    timer = threading.Timer(seconds, lambda: [os.kill(pid, signal.SIGKILL) for pid in processes_running(marker)])
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


class Tally:
    """Lines that hooks and commands send to 127.0.0.1 (`echo "$RELEASE_ID" > /dev/tcp/127.0.0.1/$PORT`):
    the sandbox lets a run reach the network but write nowhere outside its checkout, so this is how
    a test counts what ran."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def send(self, what: str = '"$RELEASE_ID"') -> str:
        """A shell line that sends `what` as one line."""
        return f"echo {what} > /dev/tcp/127.0.0.1/{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            with connection:
                data = b""
                while chunk := connection.recv(4096):
                    data += chunk
            self.lines += data.decode(errors="replace").splitlines()

    def close(self) -> None:
        self._server.close()


class Gate:
    """A hook or command that waits at `gate.wait()` goes on only once the test calls `open()`:
    the run holds a connection to 127.0.0.1 until the gate answers it, so a test can say exactly
    when a run ends instead of guessing with a sleep. A gate that is never opened lets runs go on
    after `timeout` seconds."""

    def __init__(self, timeout: float = 120.0) -> None:
        self._open = threading.Event()
        self._timeout = timeout
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.waiting = 0  # connections held so far
        threading.Thread(target=self._serve, daemon=True).start()

    def wait(self) -> str:
        """A shell line that blocks until the gate is opened."""
        return f"read -r _ < /dev/tcp/127.0.0.1/{self.port}"

    def open(self) -> None:
        self._open.set()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self.waiting += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection) -> None:
        with connection:
            self._open.wait(self._timeout)
            connection.sendall(b"go\n")

    def close(self) -> None:
        self._open.set()
        self._server.close()
