"""The figures of issue 11, each taken side by side with its baseline where it has one, interleaved."""
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
    """1: trigger accepted → first line of a trivial Python hook, sandboxed; pairs alternate who
    goes first. Target on ours' p99; the ratio of medians to the bare run is reported."""
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
    worst = p99(all_ours)
    return Row("1", "trigger accepted → hook's first line (sandboxed)",
               f"median {ms(statistics.median(all_ours))}, p99 {ms(worst)}; median ratio {ratio:.2f}×",
               f"subprocess.run: median {ms(statistics.median(all_base))}, p99 {ms(p99(all_base))}",
               1000 * worst, "p99 ≤ 1000 ms", worst <= 1.0, "ms",
               {"ratio_per_rep": ratios, "median_ratio": ratio, "ours_s": ours, "baseline_s": base,
                "ours_median_s": statistics.median(all_ours), "ours_p99_s": worst,
                "baseline_median_s": statistics.median(all_base), "baseline_p99_s": p99(all_base)})


def approve_first_line(pipeline: Pipeline, reps: int, samples: int) -> Row:
    """2: approve (POST sent) → first line of the bot release's command."""
    times = [[pipeline.approve_first_line() for _ in range(samples)] for _ in range(reps)]
    every = sum(times, [])
    worst = p99(every)
    return Row("2", "approve (POST) → bot release's command's first line",
               f"median {ms(statistics.median(every))}, p99 {ms(worst)}", "—", 1000 * worst, "p99 ≤ 1000 ms",
               worst <= 1.0, "ms", {"samples_s": times, "median_s": statistics.median(every), "p99_s": worst})


def notifications(pipeline: Pipeline, reps: int) -> list[Row]:
    """3: 20 releases go pending at once over 20 environments → each one's mail accepted by the
    SMTP server, and its webhook received."""
    mail: list[list[float]] = []
    hooks: list[list[float]] = []
    for _ in range(reps):
        m, h = pipeline.notify_round()
        mail.append(m)
        hooks.append(h)
    rows = []
    for key, what, values in (("3a", "pending → approval mail accepted by SMTP (20 at once)", mail),
                              ("3b", "pending → webhook received (20 at once)", hooks)):
        every = sum(values, [])
        worst = p99(every)
        rows.append(Row(key, what, f"median {ms(statistics.median(every))}, p99 {ms(worst)}, max {ms(max(every))}",
                        "—", worst, "p99 ≤ 5 s", worst <= 5.0, "s",
                        {"samples_s": values, "median_s": statistics.median(every), "p99_s": worst,
                         "spans_per_round": pipeline.notify_spans[-reps:]}))
    return rows


def spread(spreader, reps: int, count: int) -> Row:
    """4: releases/s with 3 workers against 1, PostgreSQL, 12 environments, a 0.2 s hook; batches
    alternate which goes first."""
    from .spread import WORKERS

    three, one = [], []
    for rep in range(reps):
        order = [(WORKERS, three), (1, one)]
        for workers, into in order if rep % 2 == 0 else reversed(order):
            spreader.use(workers)
            into.append(spreader.batch(count))
    ratios = [t / o for t, o in zip(three, one, strict=True)]
    ratio = statistics.median(ratios)
    return Row("4", f"releases/s, {WORKERS} workers, PostgreSQL, 12 envs, 0.2 s hook ({count} per batch)",
               f"{statistics.median(three):.2f} releases/s", f"1 worker: {statistics.median(one):.2f} releases/s",
               ratio, "ratio ≥ 2.5", ratio >= 2.5, "×",
               {"ratio_per_rep": ratios, "three_per_s": three, "one_per_s": one, "batch": count})


def wide_page(narrow, wide, reps: int, samples: int) -> Row:
    """7: the dashboard page (`/`) with 500 environments against 20: time per environment."""
    for board in (narrow, wide):  # warm up
        for _ in range(3):
            board.page_seconds()
    times: dict[str, list[list[float]]] = {narrow.name: [], wide.name: []}
    for rep in range(reps):
        for board in (narrow, wide) if rep % 2 == 0 else (wide, narrow):
            times[board.name].append([board.page_seconds() for _ in range(samples)])
    med = {name: [statistics.median(x) for x in runs] for name, runs in times.items()}
    ratios = [(w / wide.environments) / (n / narrow.environments)
              for w, n in zip(med[wide.name], med[narrow.name], strict=True)]
    ratio = statistics.median(ratios)
    n_ms, w_ms = (1000 * statistics.median(med[b.name]) for b in (narrow, wide))
    marginal = (w_ms - n_ms) / (wide.environments - narrow.environments)
    return Row("7", f"dashboard page, {wide.environments} vs {narrow.environments} environments: time per env",
               f"{w_ms:.0f} ms, {w_ms / wide.environments:.2f} ms/env",
               f"{n_ms:.1f} ms, {n_ms / narrow.environments:.2f} ms/env", ratio, "ratio ≤ 1.5", ratio <= 1.5, "×",
               {"ratio_per_rep": ratios, "page_s": times, "ms": {narrow.name: n_ms, wide.name: w_ms},
                "marginal_ms_per_environment": marginal})


def http(hello: Server, small: Board, large: Board, reps: int) -> list[Row]:
    """5, 6 and 8 in one loop: every round loads each target once, in a rotating order."""
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
        Row("5a", "live poll, nothing changed: req/s",
            f"{rps(poll):.0f} req/s; {cpu_ms(poll)}", f"hello {rps(hello_runs):.0f} req/s; {cpu_ms(hello_runs)}",
            poll_ratio, "ratio ≥ 0.25", poll_ratio >= 0.25, "×",
            {"ratio_per_rep": ratios(poll, hello_runs), "cpu_ratio": cpu_ratio(poll, hello_runs),
             "poll": detail(poll), **common}),
        Row("5b", "live poll, nothing changed: bytes per response",
            f"{poll_bytes:.0f} B", f"full fragment {full_bytes:,.0f} B", poll_bytes, "≤ 256 B",
            poll_bytes <= 256, "B", {"poll_bytes": poll_bytes, "fragment_bytes": full_bytes}),
        Row("6", f"dashboard fragment, 20 envs × queue of 5, {small.history:,} past: req/s",
            f"{rps(full):.0f} req/s, p99 {statistics.median(x.p99_ms for x in full):.0f} ms; {cpu_ms(full)}",
            f"hello {rps(hello_runs):.0f} req/s; {cpu_ms(hello_runs)}", fragment_ratio, "ratio ≥ 0.15",
            fragment_ratio >= 0.15, "×",
            {"ratio_per_rep": ratios(full, hello_runs), "cpu_ratio": cpu_ratio(full, hello_runs), **common}),
        Row("8", f"dashboard fragment, {large.history:,} vs {small.history:,} past releases",
            f"{rps(full_large):.0f} req/s; {cpu_ms(full_large)}", f"{rps(full):.0f} req/s; {cpu_ms(full)}",
            history_ratio, "ratio ≥ 0.9", history_ratio >= 0.9, "×",
            {"ratio_per_rep": ratios(full_large, full), "cpu_ratio": cpu_ratio(full_large, full),
             "fragment_large": detail(full_large), "fragment_small": detail(full),
             "fill_seconds": {small.name: small.fill_seconds, large.name: large.fill_seconds}}),
    ]
    return rows


def render_after_change(small: Board, large: Board, reps: int, samples: int = 10) -> Row:
    """8b: the fragment's first request after a change, which has to render it (no wrk: one at a
    time, each after a version bump), with the large vs the small history. Informational: figure 8
    measured on renders, whatever the app caches between changes."""
    times: dict[str, list[float]] = {small.name: [], large.name: []}
    for rep in range(reps):
        for board in (small, large) if rep % 2 == 0 else (large, small):
            for _ in range(samples):
                times[board.name].append(board.render_after_change())
    small_ms, large_ms = (1000 * statistics.median(times[b.name]) for b in (small, large))
    ratio = small_ms / large_ms
    return Row("8b", f"fragment right after a change (rendered), {large.history:,} vs {small.history:,} past",
               f"{large_ms:.1f} ms", f"{small_ms:.1f} ms", ratio, "report", True, "×",
               {"speed_ratio": ratio, "ms_large": large_ms, "ms_small": small_ms,
                "samples_s": {name: values for name, values in times.items()}})


def memory(web_servers: list[Server], worker_pids: list[int]) -> list[Row]:
    """9: resident memory after the run: the largest web process of ours, and the largest worker."""
    web = {f"{s.name}:{pid}": rss_mb(pid) for s in web_servers for pid in s.worker_pids()}
    workers = {str(pid): rss_mb(pid) for pid in worker_pids}
    rows = []
    if web:
        largest = max(web.values())
        rows.append(Row("9a", "resident memory, largest web process", f"{largest:.0f} MB", "—", largest,
                        "≤ 100 MB", largest <= 100, "MB", {"web_rss_mb": web}))
    if workers:
        worker = max(workers.values())
        rows.append(Row("9b", "resident memory, largest worker", f"{worker:.0f} MB", "—", worker, "≤ 120 MB",
                        worker <= 120, "MB", {"worker_rss_mb": workers}))
    return rows


def timed(label: str, fn: Callable[[], object]):
    import time

    started = time.monotonic()
    print(f"… {label}", flush=True)
    result = fn()
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    return result
