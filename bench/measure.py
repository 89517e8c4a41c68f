"""The six measurements of issue 6, each taken side by side with its baseline, interleaved."""
from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from . import load
from .dashboard import Board
from .load import Load, Target
from .pipeline import Pipeline
from .stack import Server, rss_mb


@dataclass
class Row:
    """One line of the table: a figure, its baseline, and whether the target holds."""

    key: str
    what: str
    ours: str
    baseline: str
    value: float
    target: str
    passed: bool
    unit: str = ""
    data: dict = field(default_factory=dict)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 99 // 100) - 1)]  # nearest rank


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def first_line(pipeline: Pipeline, reps: int, samples: int) -> Row:
    """1: trigger accepted → first line of a trivial Python hook; pairs alternate who goes first."""
    ours: list[list[float]] = []
    base: list[list[float]] = []
    for rep in range(reps):
        ours.append([])
        base.append([])
        for n in range(samples):
            order = [("ours", pipeline.first_line_ours), ("base", pipeline.first_line_baseline)]
            for who, measure in order if (rep + n) % 2 == 0 else reversed(order):
                (ours if who == "ours" else base)[-1].append(measure())
    ratios = [statistics.median(o) / statistics.median(b) for o, b in zip(ours, base, strict=True)]
    all_ours, all_base = sum(ours, []), sum(base, [])
    ratio = statistics.median(ratios)
    return Row("1", "trigger accepted → hook's first line",
               f"median {ms(statistics.median(all_ours))}, p99 {ms(p99(all_ours))}",
               f"median {ms(statistics.median(all_base))}, p99 {ms(p99(all_base))}",
               ratio, "ratio ≤ 2.0", ratio <= 2.0, "×",
               {"ratio_per_rep": ratios, "ours_s": ours, "baseline_s": base,
                "ours_median_s": statistics.median(all_ours), "ours_p99_s": p99(all_ours),
                "baseline_median_s": statistics.median(all_base), "baseline_p99_s": p99(all_base)})


def throughput(pipeline: Pipeline, reps: int, count: int) -> Row:
    """2: releases/s through trigger → hook exit 0 → SUCCEEDED, one worker, vs a bare loop."""
    ours, base = [], []
    for rep in range(reps):
        order = [(ours, pipeline.throughput_ours), (base, pipeline.throughput_baseline)]
        for into, measure in order if rep % 2 == 0 else reversed(order):
            into.append(measure(count))
    ratios = [o / b for o, b in zip(ours, base, strict=True)]
    ratio = statistics.median(ratios)
    return Row("2", f"releases/s through the pipeline ({count} per batch, 1 worker)",
               f"{statistics.median(ours):.1f} releases/s", f"{statistics.median(base):.1f} hook runs/s",
               ratio, "ratio ≥ 0.5", ratio >= 0.5, "×",
               {"ratio_per_rep": ratios, "ours_per_s": ours, "baseline_per_s": base, "batch": count})


def http(hello: Server, small: Board, large: Board, reps: int) -> list[Row]:
    """3, 4 and 5 in one loop: every round loads each target once, in a rotating order."""
    targets = [Target("hello", f"{hello.url}/", 200, server=hello), small.fragment, small.poll, large.fragment]
    for target in targets:  # warm up: imports, template compilation, connection pools
        load.run(target, seconds=1)
    runs: dict[str, list[Load]] = {t.name: [] for t in targets}
    for rep in range(reps):
        for target in targets[rep % len(targets):] + targets[:rep % len(targets)]:
            runs[target.name].append(load.run(target))
    hello_runs, full, poll, full_large = (runs[t.name] for t in targets)

    def ratios(top: list[Load], bottom: list[Load]) -> list[float]:
        return [a.rps / b.rps for a, b in zip(top, bottom, strict=True)]

    def rps(loads: list[Load]) -> float:
        return statistics.median(x.rps for x in loads)

    def detail(loads: list[Load]) -> dict:
        return {"rps": [x.rps for x in loads], "p50_ms": [x.p50_ms for x in loads],
                "p99_ms": [x.p99_ms for x in loads], "bytes_per_response": [x.bytes_per_response for x in loads],
                "requests": [x.requests for x in loads], "cpu_ms_per_request": [x.cpu_ms_per_request for x in loads]}

    def cpu_ratio(top: list[Load], bottom: list[Load]) -> float:
        """The same ratio from server CPU per request: what the throughput ratio would be if the
        servers had the machine to themselves (a cross-check when other work shares it)."""
        return statistics.median(b.cpu_ms_per_request / a.cpu_ms_per_request
                                 for a, b in zip(top, bottom, strict=True))

    def cpu_ms(loads: list[Load]) -> str:
        return f"{statistics.median(x.cpu_ms_per_request for x in loads):.2f} CPU ms/req"

    fragment_ratio = statistics.median(ratios(full, hello_runs))
    poll_ratio = statistics.median(ratios(poll, hello_runs))
    history_ratio = statistics.median(ratios(full_large, full))
    poll_bytes = statistics.median(x.bytes_per_response for x in poll)
    full_bytes = statistics.median(x.bytes_per_response for x in full)
    common = {"hello": detail(hello_runs), "fragment_1k": detail(full)}
    rows = [
        Row("3", f"dashboard fragment, {small.history:,} past releases: req/s",
            f"{rps(full):.0f} req/s, p99 {statistics.median(x.p99_ms for x in full):.0f} ms; {cpu_ms(full)}",
            f"hello {rps(hello_runs):.0f} req/s; {cpu_ms(hello_runs)}", fragment_ratio, "ratio ≥ 0.15",
            fragment_ratio >= 0.15, "×",
            {"ratio_per_rep": ratios(full, hello_runs), "cpu_ratio": cpu_ratio(full, hello_runs), **common}),
        Row("4a", "live poll, nothing changed (204): req/s",
            f"{rps(poll):.0f} req/s; {cpu_ms(poll)}", f"hello {rps(hello_runs):.0f} req/s; {cpu_ms(hello_runs)}",
            poll_ratio, "ratio ≥ 0.5", poll_ratio >= 0.5, "×",
            {"ratio_per_rep": ratios(poll, hello_runs), "cpu_ratio": cpu_ratio(poll, hello_runs),
             "poll": detail(poll), **common}),
        Row("4b", "live poll, nothing changed: bytes per response",
            f"{poll_bytes:.0f} B", f"full fragment {full_bytes:,.0f} B", poll_bytes, "≤ 256 B",
            poll_bytes <= 256, "B", {"poll_bytes": poll_bytes, "fragment_bytes": full_bytes}),
        Row("5", f"dashboard fragment, {large.history:,} vs {small.history:,} past releases",
            f"{rps(full_large):.0f} req/s; {cpu_ms(full_large)}", f"{rps(full):.0f} req/s; {cpu_ms(full)}",
            history_ratio, "ratio ≥ 0.9", history_ratio >= 0.9, "×",
            {"ratio_per_rep": ratios(full_large, full), "cpu_ratio": cpu_ratio(full_large, full),
             "fragment_100k": detail(full_large), "fragment_1k": detail(full)}),
    ]
    return rows


def render_after_change(small: Board, large: Board, reps: int, samples: int = 10) -> Row:
    """5b: the fragment's first request after a change, which has to render it (no wrk: one at a
    time, each after a version bump), with 100,000 vs 1,000 past releases. Informational: it keeps
    the history question answered if fragments come to be served from a cache between changes."""
    times: dict[str, list[float]] = {small.name: [], large.name: []}
    for rep in range(reps):
        for board in (small, large) if rep % 2 == 0 else (large, small):
            for _ in range(samples):
                times[board.name].append(board.render_after_change())
    small_ms, large_ms = (1000 * statistics.median(times[b.name]) for b in (small, large))
    ratio = small_ms / large_ms
    return Row("5b", "fragment right after a change (rendered), 100,000 vs 1,000 past releases",
               f"{large_ms:.1f} ms", f"{small_ms:.1f} ms", ratio, "report", True, "×",
               {"speed_ratio": ratio, "ms_100k": large_ms, "ms_1k": small_ms,
                "samples_s": {name: values for name, values in times.items()}})


def memory(web_servers: list[Server], worker_pid: int) -> list[Row]:
    """6: resident memory after the run: the largest web process of ours, and the worker."""
    web = {f"{s.name}:{pid}": rss_mb(pid) for s in web_servers for pid in s.worker_pids()}
    worker = rss_mb(worker_pid)
    largest = max(web.values())
    return [
        Row("6a", "resident memory, largest web process", f"{largest:.0f} MB", "—", largest, "≤ 120 MB",
            largest <= 120, "MB", {"web_rss_mb": web}),
        Row("6b", "resident memory, worker", f"{worker:.0f} MB", "—", worker, "≤ 150 MB",
            worker <= 150, "MB", {"worker_rss_mb": worker}),
    ]


def timed(label: str, fn: Callable[[], object]):
    import time

    started = time.monotonic()
    print(f"… {label}", flush=True)
    result = fn()
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    return result
