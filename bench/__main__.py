"""`make bench` (`python -m bench`): measure Releasegate against the machine's own baselines,
print a table, write bench/results/latest.json, and exit 1 when a target is missed.

BENCH_REPS (default 5) sets the repetitions; BENCH_ONLY=pipeline,spread,web,pages picks groups of
figures; BENCH_PROFILE=1 also records py-spy profiles of the worker and of a web process into
bench/results/; BENCH_DATABASE_URL runs every instance on that PostgreSQL.
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
from .dashboard import Board, WideBoard
from .pipeline import Pipeline
from .repo import make_repo
from .spread import Spread
from .stack import APP_ROOT, BENCH_DIR, GUNICORN_SETTINGS, Stack, hook_python

RESULTS = BENCH_DIR / "results"
REPS = int(os.environ.get("BENCH_REPS", "5"))
FIRST_LINE_SAMPLES = int(os.environ.get("BENCH_FIRST_LINE_SAMPLES", "20"))  # per repetition (figure 1)
APPROVE_SAMPLES = int(os.environ.get("BENCH_APPROVE_SAMPLES", "10"))  # per repetition (figure 2)
SPREAD_BATCH = int(os.environ.get("BENCH_SPREAD_BATCH", "24"))  # releases per batch (figure 4)
PAGE_SAMPLES = int(os.environ.get("BENCH_PAGE_SAMPLES", "10"))  # page loads per repetition (figure 7)
HISTORY = (1_000, int(os.environ.get("BENCH_HISTORY", "1000000")))  # figure 8's small and large boards
# BENCH_ONLY=pipeline,web…: only those groups of figures, to iterate faster.
GROUPS = {"pipeline": "1, 2, 3", "spread": "4", "web": "5, 6, 8", "pages": "7"}
ONLY = [g.strip() for g in os.environ.get("BENCH_ONLY", "").split(",") if g.strip()] or list(GROUPS)


def main() -> int:
    if REPS < 3:
        raise SystemExit("BENCH_REPS must be at least 3: medians of fewer runs say little.")
    unknown = [g for g in ONLY if g not in GROUPS]
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown group {unknown[0]!r}; the groups are "
                         + ", ".join(f"{g} (figures {f})" for g, f in GROUPS.items()) + ".")
    if "web" in ONLY:
        load.wrk_path()
    RESULTS.mkdir(exist_ok=True)
    for old in RESULTS.glob("*.log"):
        old.unlink()
    started, load_before = time.monotonic(), os.getloadavg()
    print(f"Load average before the run: {' '.join(f'{x:.2f}' for x in load_before)} ({os.cpu_count()} CPUs)")
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        print(f"Note: the machine is busy before the run (load {load_before[0]:.1f} on {os.cpu_count()} CPUs); "
              "ratios are taken side by side, but absolute figures will be low and noisier.")
    rows: list[measure.Row] = []
    servers, worker_pids = [], []
    pipeline = small = spreader = None
    with Stack() as stack:
        stack.start_redis()
        repo = stack.scratch / "repo"
        commit = make_repo(repo)
        if "pipeline" in ONLY:
            pipeline = measure.timed("pipeline: one web server, one worker, SMTP and webhook receivers",
                                     lambda: Pipeline(stack, repo, commit))
            rows.append(measure.timed(f"1: first line, {REPS} × {FIRST_LINE_SAMPLES} pairs",
                                      lambda: measure.first_line(pipeline, REPS, FIRST_LINE_SAMPLES)))
            rows.append(measure.timed(f"2: approve → command, {REPS} × {APPROVE_SAMPLES}",
                                      lambda: measure.approve_first_line(pipeline, REPS, APPROVE_SAMPLES)))
            rows += measure.timed(f"3: mail and webhook, {REPS} rounds of 20",
                                  lambda: measure.notifications(pipeline, REPS))
            servers.append(pipeline.server)
            worker_pids.append(pipeline.worker.pid)
        if "spread" in ONLY:
            spreader = measure.timed("spread: PostgreSQL, 12 environments, 3 workers",
                                     lambda: Spread(stack, repo, commit))
            rows.append(measure.timed(f"4: {REPS} × (3 workers, 1 worker) × {SPREAD_BATCH} releases",
                                      lambda: measure.spread(spreader, REPS, SPREAD_BATCH)))
            spreader.use(1)  # the worker that ran both kinds of batch stays to be measured
            servers.append(spreader.server)
            worker_pids += [w.pid for w in spreader.workers[:1]]
        if "web" in ONLY:
            hello = stack.serve_hello()
            small, large = (measure.timed(f"dashboard with {n:,} past releases",
                                          lambda n=n: Board(stack, repo, f"board-{_short(n)}", n))
                            for n in HISTORY)
            rows += measure.timed(f"5, 6, 8: wrk, {REPS} rounds of 4 × {load.WRK_SECONDS:g} s",
                                  lambda: measure.http(hello, small, large, REPS))
            rows.append(measure.timed("8b: renders right after a change",
                                      lambda: measure.render_after_change(small, large, REPS)))
            servers += [small.server, large.server]
        if "pages" in ONLY:
            narrow, wide = (measure.timed(f"dashboard page with {p * 10} environments",
                                          lambda p=p: WideBoard(stack, repo, p)) for p in (2, 50))
            rows.append(measure.timed(f"7: page loads, {REPS} × {PAGE_SAMPLES} each",
                                      lambda: measure.wide_page(narrow, wide, REPS, PAGE_SAMPLES)))
            servers += [narrow.server, wide.server]
        rows += measure.memory(servers, worker_pids)
        if os.environ.get("BENCH_PROFILE"):
            from .profile import profile_all, profile_spread

            if pipeline is not None:
                measure.timed("profiles (py-spy)", lambda: profile_all(pipeline, small))
            if spreader is not None:
                measure.timed("profile of figure 4 (py-spy)", lambda: profile_spread(spreader, SPREAD_BATCH))
        problems = stack.log_problems(RESULTS)
    rows.sort(key=lambda row: (int(row.key.rstrip("ab")), row.key))
    print_table(rows)
    for problem in problems:
        print(f"Warning: {problem}")
    loadavg = {"before": load_before, "after": os.getloadavg()}
    seconds = time.monotonic() - started
    write_json(rows, seconds, loadavg, problems)
    print(f"Took {seconds:.0f} s; load average before {load_before[0]:.2f}, after {loadavg['after'][0]:.2f}.")
    missed = [row.key for row in rows if not row.passed]
    if missed:
        print(f"\nMissed: {', '.join(missed)} (see bench/README.md for what costs the time).")
        return 1
    print("\nEvery target met.")
    return 0


def _short(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def _value(row: measure.Row) -> str:
    formats = {"×": "{:.2f}×", "s": "{:.2f} s", "MB": "{:.1f} MB"}
    return formats.get(row.unit, "{:.0f} " + row.unit).format(row.value)


def print_table(rows: list[measure.Row]) -> None:
    headers = ("#", "measurement", "ours", "baseline", "value", "target", "")
    lines = [(r.key, r.what, r.ours, r.baseline, _value(r), r.target,
              ("ok" if r.passed else "MISSED") if r.target != "report" else "") for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *lines, strict=True)]
    print()
    for line in (headers, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def write_json(rows: list[measure.Row], seconds: float, loadavg: dict, problems: list[str]) -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=APP_ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=APP_ROOT,
                                capture_output=True, text=True).stdout.strip())
    document = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "app": {"root": str(APP_ROOT), "commit": commit, "uncommitted_changes": dirty},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "hook_python": hook_python()},
        "settings": {"repetitions": REPS, "first_line_samples_per_rep": FIRST_LINE_SAMPLES,
                     "approve_samples_per_rep": APPROVE_SAMPLES, "spread_batch": SPREAD_BATCH,
                     "page_samples_per_rep": PAGE_SAMPLES, "history": HISTORY,
                     "gunicorn": GUNICORN_SETTINGS, "wrk": {"threads": load.WRK_THREADS,
                                                            "connections": load.WRK_CONNECTIONS,
                                                            "seconds": load.WRK_SECONDS},
                     "database": ("postgresql (BENCH_DATABASE_URL)" if os.environ.get("BENCH_DATABASE_URL")
                                  else "sqlite; figure 4 on the bench's own postgresql"),
                     "only": ONLY},
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
