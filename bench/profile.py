"""BENCH_PROFILE=1: py-spy profiles of the worker and of the web processes under the benchmark's
load, written to bench/results/ as collapsed stacks (flamegraph input) plus a readable summary."""
from __future__ import annotations

import collections
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import load
from .dashboard import Board
from .pipeline import Pipeline

RESULTS = Path(__file__).resolve().parent / "results"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    return str(Path(sys.executable).with_name("py-spy"))


def record(pid: int, name: str, *, subprocesses: bool = False, idle: bool = False) -> subprocess.Popen:
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", "400", "--format", "raw", "--nonblocking",
            "-o", str(RESULTS / f"profile-{name}.collapsed")]
    argv += ["--subprocesses"] if subprocesses else []
    argv += ["--idle", "--threads"] if idle else []
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attached
    return proc


def finish(proc: subprocess.Popen, name: str, *, only_thread: str | None = None) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    collapsed = RESULTS / f"profile-{name}.collapsed"
    (RESULTS / f"profile-{name}.txt").write_text(summarize(collapsed.read_text(), only_thread=only_thread))


def summarize(collapsed: str, *, only_thread: str | None = None, top: int = 40) -> str:
    """Inclusive and self share of samples per function (file:function, lines merged)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if only_thread is not None and not (frames[0].startswith("thread") and only_thread in frames[0]):
            continue
        names = [_name(frame) for frame in frames if not frame.startswith(("process ", "thread "))]
        if not names:
            continue
        samples = int(count)
        total += samples
        for name in set(names):
            inclusive[name] += samples
        own[names[-1]] += samples
    lines = [f"{total} samples" + (f" of thread {only_thread}" if only_thread else ""), "",
             "inclusive  self    function"]
    for name, samples in inclusive.most_common(top):
        lines.append(f"{100 * samples / max(total, 1):6.1f}%  {100 * own[name] / max(total, 1):6.1f}%  {name}")
    return "\n".join(lines) + "\n"


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "/lib/python3."):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    else:
        file = "/".join(file.split("/")[-2:])
    return f"{file}:{match['function']}"


def profile_spread(spreader, count: int = 24) -> None:
    """Figure 4: on-CPU samples (no idle) of the 3 workers and the web server through one batch,
    merged into profile-spread-workers.* and profile-spread-web.*; plus each process's CPU
    seconds, written to profile-spread-cpu.txt."""
    from .load import _cpu_seconds
    from .spread import WORKERS

    spreader.use(WORKERS)
    pids = {f"worker-{n}": w.pid for n, w in enumerate(spreader.workers)}
    web = [spreader.server.process.pid, *spreader.server.worker_pids()]
    spies = {name: record(pid, f"spread-{name}", subprocesses=True) for name, pid in pids.items()}
    spies["web"] = record(spreader.server.process.pid, "spread-web", subprocesses=True)
    before = {name: _cpu_seconds([pid]) for name, pid in pids.items()} | {"web": _cpu_seconds(web)}
    rate = spreader.batch(count)
    after = {name: _cpu_seconds([pid]) for name, pid in pids.items()} | {"web": _cpu_seconds(web)}
    for name, spy in spies.items():
        finish(spy, f"spread-{name}")
    merged = "".join((RESULTS / f"profile-spread-{name}.collapsed").read_text() for name in pids)
    (RESULTS / "profile-spread-workers.collapsed").write_text(merged)
    (RESULTS / "profile-spread-workers.txt").write_text(summarize(merged))
    lines = [f"{count} releases at {rate:.2f}/s with {WORKERS} workers (under py-spy)", ""]
    lines += [f"{name}: {after[name] - before[name]:.2f} CPU s, {1000 * (after[name] - before[name]) / count:.0f} "
              "ms per release of the batch" for name in after]
    (RESULTS / "profile-spread-cpu.txt").write_text("\n".join(lines) + "\n")


def profile_all(pipeline: Pipeline, board: Board | None) -> None:
    """The worker through 20 releases and 5 approvals, and (apart) through a notification round of
    figure 3; the web processes under the fragment and the poll
    (without a board, as with BENCH_ONLY=pipeline, only the worker)."""
    pipeline.wait_idle()
    spy = record(pipeline.worker.pid, "worker", idle=True)
    for _ in range(20):  # one at a time, as figure 1 takes them
        pipeline.wait_done([pipeline.trigger()])
    for _ in range(5):
        pipeline.approve_first_line()
    pipeline.wait_idle()
    finish(spy, "worker", only_thread="MainThread")
    spy = record(pipeline.worker.pid, "worker-notify", idle=True)
    pipeline.notify_round()
    pipeline.wait_idle()
    finish(spy, "worker-notify", only_thread="MainThread")
    if board is None:
        return
    for target in (board.fragment, board.poll):
        spy = record(board.server.process.pid, f"web-{target.name.split('-')[0]}", subprocesses=True)
        load.run(target)
        finish(spy, f"web-{target.name.split('-')[0]}")
