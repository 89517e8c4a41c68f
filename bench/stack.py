"""The processes of one benchmark run, all on 127.0.0.1 and under one scratch directory:
Redis, databases, gunicorn servers (ours and the hello baseline, same settings) and workers."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from scripts.run_local import free_port, start_redis, wait_for_port

BENCH_DIR = Path(__file__).resolve().parent
# The application under measurement: this checkout, or a scratch copy holding a proposed fix.
APP_ROOT = Path(os.environ.get("BENCH_APP_ROOT") or BENCH_DIR.parent).resolve()
PYTHON = sys.executable
# One set of settings for every web server of the run, ours and hello alike.
GUNICORN_SETTINGS = ["--workers", "2", "--worker-class", "sync", "--timeout", "60", "--backlog", "2048"]


def hook_python() -> str:
    """The interpreter hooks run with, as an absolute path, so ours and the baseline start the same one.

    A version-manager shim (pyenv) on the PATH costs ~0.4 s per start; production runs the system
    python3, so prefer /usr/bin/python3.
    """
    chosen = os.environ.get("BENCH_HOOK_PYTHON") or ("/usr/bin/python3" if Path("/usr/bin/python3").exists()
                                                     else shutil.which("python3"))
    if not chosen:
        raise SystemExit("No python3 found for the hooks; set BENCH_HOOK_PYTHON to an interpreter.")
    return str(Path(chosen).resolve())


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Server:
    name: str
    port: int
    process: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the master) that answer requests."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []


@dataclass
class App:
    """One Releasegate instance: its database, its Redis database number and its settings."""

    name: str
    env: dict[str, str]
    database_url: str
    redis_db: int
    engine: sa.Engine = field(repr=False)


class Stack:
    """Starts what a run needs and stops all of it, in reverse order, on exit."""

    def __init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="releasegate-bench-"))
        self.children: list[Process] = []
        self.redis_url = ""
        self.next_redis_db = 0
        self.secret_key = secrets.token_hex(32)
        # BENCH_DATABASE_URL: every instance on that PostgreSQL; else SQLite files, and a PostgreSQL
        # of our own (Debian's binaries) for the instances that need one (figure 4).
        self.shared_postgres = os.environ.get("BENCH_DATABASE_URL", "")
        self.own_postgres: tuple[list[str], Path, Path, str] | None = None
        self.schemas: list[tuple[str, str]] = []  # (server url, schema)
        self.exit_calls: list = []

    def on_exit(self, call) -> None:
        """Call `call` when the run ends (before the processes stop)."""
        self.exit_calls.append(call)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        for call in reversed(self.exit_calls):
            try:
                call()
            except Exception as error:  # noqa: BLE001 -- stopping the rest matters more
                print(f"Warning: stopping {call}: {error}")
        for child in reversed(self.children):
            self.stop(child)
        for server, schema in self.schemas:
            if self.own_postgres and server == self.own_postgres[3]:
                continue  # the whole server goes below
            engine = sa.create_engine(server)
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            engine.dispose()
        if self.own_postgres:
            as_user, bindir, root, _ = self.own_postgres
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
                           capture_output=True)
            shutil.rmtree(root, ignore_errors=True)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.scratch, ignore_errors=True)

    # -- processes ------------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        log = self.scratch / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(argv, cwd=APP_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        process = Process(name, popen, log)
        self.children.append(process)
        return process

    def stop(self, process: Process) -> None:
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGTERM)
            try:
                process.popen.wait(15)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        if process in self.children:
            self.children.remove(process)

    def start_redis(self) -> None:
        """One Redis for the run, with a password as in production (each instance a database of it)."""
        log = self.scratch / "redis.log"
        with open(log, "ab") as out:
            popen, self.redis_url = start_redis(free_port(0), "--save", "", "--appendonly", "no",
                                                "--dir", str(self.scratch), "--databases", "16", cwd=APP_ROOT,
                                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(Process("redis", popen, log))

    def serve(self, name: str, wsgi_app: str, env: dict[str, str], cwd_module_path: Path | None = None) -> Server:
        port = free_port(0)
        argv = [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *GUNICORN_SETTINGS]
        if cwd_module_path is not None:
            argv += ["--chdir", str(cwd_module_path)]
        process = self.spawn(name, [*argv, wsgi_app], env)
        try:
            wait_for_port(port, 30)
        except SystemExit:
            raise SystemExit(f"{name} did not start:\n{process.tail()}") from None
        return Server(name, port, process)

    def serve_app(self, app: App) -> Server:
        return self.serve(f"web-{app.name}", "wsgi:app", app.env)

    def serve_hello(self) -> Server:
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
        return self.serve("web-hello", "hello:app", env, cwd_module_path=BENCH_DIR)

    def start_worker(self, app: App, suffix: str = "") -> Process:
        return self.spawn(f"worker-{app.name}{suffix and '-' + suffix}", [PYTHON, "-m", "worker"], app.env)

    def log_problems(self, keep_in: Path) -> list[str]:
        """Tracebacks in the logs of this run's processes (a figure taken over errors means little);
        such logs are copied to `keep_in`."""
        found = []
        for log in sorted(self.scratch.glob("*.log")):
            count = log.read_text(errors="replace").count("Traceback (most recent call last)")
            if count:
                shutil.copy(log, keep_in / log.name)
                found.append(f"{count} traceback(s) in {log.name} (kept as {keep_in.name}/{log.name})")
        return found

    # -- Releasegate instances ----------------------------------------------------------------

    def postgres(self) -> str:
        """A PostgreSQL server's URL: BENCH_DATABASE_URL, else one started here for the run."""
        if self.shared_postgres:
            return self.shared_postgres
        if self.own_postgres is None:
            self.own_postgres = self._start_postgres()
        return self.own_postgres[3]

    def _start_postgres(self) -> tuple[list[str], Path, Path, str]:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                       key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
        if not found:
            raise SystemExit("Figure 4 runs on PostgreSQL: install Debian's postgresql (apt-get install postgresql) "
                             "or set BENCH_DATABASE_URL=postgresql+psycopg://user:password@host:port/database.")
        bindir = found[-1].parent
        root = Path(tempfile.mkdtemp(prefix="releasegate-bench-pg-"))
        password = secrets.token_hex(16)
        (root / "pw").write_text(password)
        as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as Debian's postgres user
            import pwd

            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise SystemExit("Running as root, the bench's PostgreSQL needs a 'postgres' user to run as "
                                 "(Debian's postgresql package makes one), or set BENCH_DATABASE_URL.") from None
            for path in (root, root / "pw"):
                os.chown(path, account.pw_uid, account.pw_gid)
            as_user = ["runuser", "-u", "postgres", "--"]
        port = free_port(0)
        for argv in ([str(bindir / "initdb"), "-D", str(root / "data"), "-A", "scram-sha-256", "-U", "postgres",
                      f"--pwfile={root / 'pw'}", "-E", "UTF8"],
                     [str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-o",
                      f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"]):
            proc = subprocess.run([*as_user, *argv], capture_output=True, text=True)
            if proc.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise SystemExit(f"Starting the bench's PostgreSQL failed ({argv[0]}):\n{proc.stdout}{proc.stderr}")
        return as_user, bindir, root, f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port}/postgres"

    def app(self, name: str, *, postgres: bool = False, env: dict[str, str] | None = None) -> App:
        """A migrated, empty Releasegate instance with its own database and Redis database."""
        database_url = self._database(name, self.postgres() if postgres or self.shared_postgres else "")
        redis_db, self.next_redis_db = self.next_redis_db, self.next_redis_db + 1
        instance = self.scratch / f"instance-{name}"
        instance.mkdir()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "MAIL_"))},
            "RELEASEGATE_ENV": "production",
            "SECRET_KEY": self.secret_key,
            "RELEASEGATE_INSTANCE": str(instance),
            "DATABASE_URL": database_url,
            "REDIS_URL": f"{self.redis_url}/{redis_db}",
            "REPO_CACHE_DIR": str(instance / "repos"),
            "HOOK_PYTHON": hook_python(),
            "BASE_URL": "http://127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        app = App(name, env, database_url, redis_db, sa.create_engine(database_url))
        self.flask(app, "db", "upgrade")
        return app

    def flask(self, app: App, *args: str) -> str:
        proc = subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", *args], cwd=APP_ROOT, env=app.env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"`flask {' '.join(args[:2])}` failed for {app.name}:\n{proc.stderr[-2000:]}")
        return proc.stdout.strip()

    def _database(self, name: str, server: str) -> str:
        if not server:
            return f"sqlite:///{self.scratch / f'{name}.db'}"
        schema = f"rg_bench_{re.sub(r'[^a-z0-9_]', '_', name)}"
        engine = sa.create_engine(server)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        except sa.exc.OperationalError as error:
            raise SystemExit(f"BENCH_DATABASE_URL: could not create the schema {schema}: {error.orig}. Point it at "
                             "a PostgreSQL database whose user may create schemas.") from None
        finally:
            engine.dispose()
        self.schemas.append((server, schema))
        url = sa.make_url(server)
        return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def wait_until(condition, timeout: float, what: str, interval: float = 0.02, *, alive: Process | None = None):
    """Poll `condition` until it holds; stop at once, with its log, when `alive` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and alive.popen.poll() is not None:
            raise SystemExit(f"{alive.name} exited ({alive.popen.returncode}) while waiting for {what}; "
                             f"its log ends:\n{alive.tail()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"Timed out after {timeout:g} s waiting for {what}.")
        time.sleep(interval)
