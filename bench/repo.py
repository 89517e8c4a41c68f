"""The git repository the benchmark releases come from, with its two pre-release hooks."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

# The trivial hook of measurements 1 and 2. Its first line carries the moment it was printed
# (CLOCK_MONOTONIC, shared by every process of the machine), so the delay from trigger to
# first line can be read back from the stored hook output.
PIPELINE_HOOK = '''"""Benchmark hook: says when it started, reads the payload, lets the release go ahead."""
import time

print(f"first line at {time.monotonic():.6f}", flush=True)

import json  # noqa: E402
import sys  # noqa: E402

with open(sys.argv[1]) as payload_file:
    payload = json.load(payload_file)
print(f"{len(payload['resources'])} change(s) to {payload['environmentName']}: going ahead.")
sys.exit(0)
'''

# The dashboard's hook: every release waits for a human, so each environment shows an
# active release pending approval with its queue behind it.
BOARD_HOOK = '''"""Benchmark hook: every release needs approval."""
import sys

print("Approval required.")
sys.exit(2)
'''

# Figure 4's hook: a fifth of a second of work that needs no CPU, so releases can overlap.
SPREAD_HOOK = '''"""Benchmark hook: a fifth of a second, then go ahead."""
import sys
import time

print("working", flush=True)
time.sleep(0.2)
sys.exit(0)
'''

# Figure 2's release command: its first line says when it started (wall clock: bash has no
# monotonic clock, and the bench compares it with the moment the approval was sent).
COMMAND = 'printf "first line at wall %s\\n" "$EPOCHREALTIME"; echo "applied $1"'

GIT_ENV = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
FILLER_FILES = 12  # a small infrastructure repository: a few service definitions besides the hooks


def make_repo(path: Path) -> str:
    """Create the repository; returns the full sha of its head commit on `main`."""
    files = {
        "pipeline/pre_release_hooks/pre_release_hook.py": PIPELINE_HOOK,
        "board/pre_release_hooks/pre_release_hook.py": BOARD_HOOK,
        "approve/pre_release_hooks/pre_release_hook.py": BOARD_HOOK,
        "notify/pre_release_hooks/pre_release_hook.py": BOARD_HOOK,
        "spread/pre_release_hooks/pre_release_hook.py": SPREAD_HOOK,
        "README.md": "Services released through Releasegate's benchmark.\n",
    }
    for n in range(FILLER_FILES):
        service = (f'{{\n  "name": "service-{n:02d}",\n  "image": "registry.local/service-{n:02d}:1.{n}",\n'
                   '  "replicas": 3,\n  "env": {"LOG_LEVEL": "info"}\n}\n')
        files[f"services/service-{n:02d}.json"] = service * 8
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "benchmark repository"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True,
                          text=True).stdout.strip()


def checkout_copy(repo: Path, commit: str, dest: Path) -> None:
    """A plain copy of the commit's tree, for the bare-subprocess baseline."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=repo, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def first_line_time(output: str) -> float:
    """The CLOCK_MONOTONIC moment in the pipeline hook's first line."""
    first = output.splitlines()[0] if output else ""
    if not first.startswith("first line at "):
        raise SystemExit(f"The hook's first line is not the benchmark's: {first!r}.")
    return float(first.removeprefix("first line at "))


def command_first_line_time(output: str) -> float:
    """The wall-clock moment (time.time()) in the release command's first line."""
    first = output.splitlines()[0] if output else ""
    if not first.startswith("first line at wall "):
        raise SystemExit(f"The release command's first line is not the benchmark's: {first!r}.")
    return float(first.removeprefix("first line at wall "))
