"""`make bench` (`python -m bench`): measure Releasegate against the machine's own baselines,
print a table, write bench/results/latest.json, and exit 1 when a target is missed.

BENCH_REPS (default 5) sets the repetitions; BENCH_PROFILE=1 also records py-spy profiles of
the worker and of a web process into bench/results/; BENCH_DATABASE_URL runs on PostgreSQL.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime

from . import load, measure
from .dashboard import Board
from .pipeline import Pipeline
from .repo import make_repo
from .stack import APP_ROOT, BENCH_DIR, GUNICORN_SETTINGS, Stack, hook_python

RESULTS = BENCH_DIR / "results"
REPS = int(os.environ.get("BENCH_REPS", "5"))
FIRST_LINE_SAMPLES = int(os.environ.get("BENCH_FIRST_LINE_SAMPLES", "20"))  # per repetition
BATCH = int(os.environ.get("BENCH_BATCH", "40"))  # releases per throughput repetition
HISTORY = (1_000, 100_000)
# BENCH_ONLY=pipeline: only the worker's figures (1, 2 and the worker's memory), to iterate faster.
ONLY = os.environ.get("BENCH_ONLY", "").strip()


def main() -> int:
    if REPS < 3:
        raise SystemExit("BENCH_REPS must be at least 3: medians of fewer runs say little.")
    if ONLY not in ("", "pipeline"):
        raise SystemExit(f"BENCH_ONLY={ONLY!r}: the only subset is 'pipeline' (figures 1, 2 and 6b).")
    if not ONLY:
        load.wrk_path()
    RESULTS.mkdir(exist_ok=True)
    for old in RESULTS.glob("*.log"):
        old.unlink()
    started, load_before = time.monotonic(), os.getloadavg()
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        print(f"Note: the machine is busy before the run (load {load_before[0]:.1f} on {os.cpu_count()} CPUs); "
              "ratios are taken side by side, but absolute figures will be low and noisier.")
    with Stack() as stack:
        stack.start_redis()
        repo = stack.scratch / "repo"
        commit = make_repo(repo)
        pipeline = measure.timed("pipeline: one web server, one worker", lambda: Pipeline(stack, repo, commit))
        rows = [measure.timed(f"1: first line, {REPS} × {FIRST_LINE_SAMPLES} pairs",
                              lambda: measure.first_line(pipeline, REPS, FIRST_LINE_SAMPLES)),
                measure.timed(f"2: throughput, {REPS} × {BATCH} releases each",
                              lambda: measure.throughput(pipeline, REPS, BATCH))]
        if ONLY == "pipeline":
            rows += [row for row in measure.memory([pipeline.server], pipeline.worker.pid) if row.key == "6b"]
            small = None
        else:
            hello = stack.serve_hello()
            small, large = (measure.timed(f"dashboard with {n:,} past releases",
                                          lambda n=n: Board(stack, repo, f"board-{n // 1000}k", n))
                            for n in HISTORY)
            rows += measure.timed(f"3-5: wrk, {REPS} rounds of 4 × {load.WRK_SECONDS:g} s",
                                  lambda: measure.http(hello, small, large, REPS))
            rows.append(measure.timed("5b: renders right after a change",
                                      lambda: measure.render_after_change(small, large, REPS)))
            rows += measure.memory([pipeline.server, small.server, large.server], pipeline.worker.pid)
        if os.environ.get("BENCH_PROFILE"):
            from .profile import profile_all

            measure.timed("profiles (py-spy)", lambda: profile_all(pipeline, small))
        problems = stack.log_problems(RESULTS)
    print_table(rows)
    for problem in problems:
        print(f"Warning: {problem}")
    write_json(rows, time.monotonic() - started, {"before": load_before, "after": os.getloadavg()}, problems)
    missed = [row.key for row in rows if not row.passed]
    if missed:
        print(f"\nMissed: {', '.join(missed)} (see bench/README.md for what costs the time).")
        return 1
    print("\nEvery target met.")
    return 0


def print_table(rows: list[measure.Row]) -> None:
    headers = ("#", "measurement", "ours", "baseline", "value", "target", "")
    lines = [(r.key, r.what, r.ours, r.baseline, f"{r.value:.2f}×" if r.unit == "×" else f"{r.value:.0f} {r.unit}",
              r.target, ("ok" if r.passed else "MISSED") if r.target != "report" else "") for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *lines, strict=True)]
    print()
    for line in (headers, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def write_json(rows: list[measure.Row], seconds: float, loadavg: dict, problems: list[str]) -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=APP_ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=APP_ROOT, capture_output=True,
                                text=True).stdout.strip())
    document = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "app": {"root": str(APP_ROOT), "commit": commit, "uncommitted_changes": dirty},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "hook_python": hook_python()},
        "settings": {"repetitions": REPS, "first_line_samples_per_rep": FIRST_LINE_SAMPLES, "batch": BATCH,
                     "gunicorn": GUNICORN_SETTINGS, "wrk": {"threads": load.WRK_THREADS,
                                                            "connections": load.WRK_CONNECTIONS,
                                                            "seconds": load.WRK_SECONDS},
                     "database": "postgresql" if os.environ.get("BENCH_DATABASE_URL") else "sqlite",
                     "only": ONLY or "all"},
        "seconds": round(seconds, 1),
        "loadavg": loadavg,
        "log_problems": problems,
        "passed": all(row.passed for row in rows),
        "results": [asdict(row) for row in rows],
    }
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nWrote {(RESULTS / 'latest.json').relative_to(BENCH_DIR.parent)}.")


if __name__ == "__main__":
    sys.exit(main())
