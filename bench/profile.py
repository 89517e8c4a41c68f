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
