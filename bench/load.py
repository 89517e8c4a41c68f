"""HTTP load with wrk: bounded in time, on 127.0.0.1, every answer's status checked."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .client import USER_AGENT
from .stack import BENCH_DIR, Server

WRK_THREADS = int(os.environ.get("BENCH_WRK_THREADS", "1"))
WRK_CONNECTIONS = int(os.environ.get("BENCH_WRK_CONNECTIONS", "8"))
WRK_SECONDS = float(os.environ.get("BENCH_WRK_SECONDS", "4"))


@dataclass(frozen=True)
class Target:
    """One URL to load, with the only status its answers may have."""

    name: str
    url: str
    status: int
    cookie: str = ""
    server: Server | None = None  # whose CPU time to count


@dataclass(frozen=True)
class Load:
    requests: int
    bytes: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    cpu_seconds: float  # spent by the server's processes during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def bytes_per_response(self) -> float:
        return self.bytes / self.requests if self.requests else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU per answer: what capacity depends on, and steady when other work shares the machine."""
        return 1000 * self.cpu_seconds / self.requests if self.requests else 0.0


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (or run `make bench`, which installs it).")
    return found


def run(target: Target, seconds: float = WRK_SECONDS) -> Load:
    argv = [wrk_path(), "-t", str(WRK_THREADS), "-c", str(WRK_CONNECTIONS), "-d", f"{seconds:g}s",
            "--timeout", "10s", "-s", str(BENCH_DIR / "wrk_report.lua"), "-H", f"User-Agent: {USER_AGENT}"]
    if target.cookie:
        argv += ["-H", f"Cookie: {target.cookie}"]
    pids = [target.server.process.pid, *target.server.worker_pids()] if target.server else []
    cpu_before = _cpu_seconds(pids)
    proc = subprocess.run([*argv, target.url], capture_output=True, text=True, timeout=seconds + 60)
    cpu = _cpu_seconds(pids) - cpu_before
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed on {target.name}:\n{proc.stdout}\n{proc.stderr}")
    report = json.loads(line.removeprefix("WRK_JSON "))
    errors = {k: v for k, v in report["errors"].items() if v and k != "status"}
    wrong = {status: n for status, n in report["statuses"].items() if int(status) != target.status}
    if errors or wrong or not report["requests"]:
        raise SystemExit(f"wrk on {target.name} ({target.url}) expected only {target.status} answers; "
                         f"got statuses {report['statuses']}, errors {report['errors']}.")
    latency = report["latency_us"]
    return Load(requests=report["requests"], bytes=report["bytes"], seconds=report["duration_us"] / 1e6,
                p50_ms=latency["p50"] / 1000, p99_ms=latency["p99"] / 1000, statuses=report["statuses"],
                cpu_seconds=cpu)


def _cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of live processes, from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")
