"""What the migration tests share: a database of their own, migrated step by step
(empty_database, migrate, database_state, schema_differences), and what a deployment of the first
version holds: seed_first_schema fills a database built by the FIRST migration the way that
version left it, `upgraded` upgrades it to the head, and assert_rows_kept checks every row
survived. A migration that renames, moves or drops an old column fails the data tests on
purpose: teach `assert_rows_kept` where the value went.
"""
from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from argon2 import PasswordHasher

from tests.fixtures.services import POSTGRES_URL
from tests.helpers import SAMPLE_LIKE_HOOK, git, make_repo
from webapp.extensions import db, enable_migrations
from webapp.models import utcnow

ROOT_DIR = Path(__file__).resolve().parents[2]
FIRST_REVISION = "0001"  # the schema `seed_first_schema` writes for
_databases = itertools.count()


# -- a database of our own, migrated step by step ----------------------------------------------

@pytest.fixture()
def empty_database(tmp_path) -> str:
    """The URL of an empty database (no tables at all) on the suite's database server."""
    if not POSTGRES_URL:
        yield f"sqlite:///{tmp_path / 'releasegate.db'}"
        return
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"rg_test_{os.getpid()}_upgrade_{next(_databases)}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def make_app(url: str, tmp_path: Path, redis_url: str = ""):
    from webapp import create_app

    return create_app({
        "SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url, "SECRET_KEY": "test-secret",
        "REPO_CACHE_DIR": str(tmp_path / "repo-cache"), "INSTANCE_DIR": str(tmp_path / "instance"),
        # Not the cost the seeded hashes were made with: a hash carries its own parameters.
        "ARGON2_TIME_COST": 2, "ARGON2_MEMORY_KIB": 16384, "TESTING": True,
    })


def migrate(url: str, tmp_path: Path, command: str, revision: str) -> None:
    """`flask db upgrade|downgrade <revision>` on `url`, as an operator runs it."""
    import flask_migrate

    app = make_app(url, tmp_path)
    enable_migrations(app)  # as the `flask` command does
    with app.app_context():
        getattr(flask_migrate, command)(revision=revision)
        for engine in db.engines.values():
            engine.dispose()


def revisions_oldest_first() -> list[str]:
    script = ScriptDirectory(str(ROOT_DIR / "migrations"))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def database_state(url: str) -> tuple[set[str], str | None]:
    """The tables of the database at `url` and its alembic revision."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            version = (connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
                       if "alembic_version" in tables else None)
    finally:
        engine.dispose()
    return tables - {"alembic_version"}, version


def schema_differences(url: str, tmp_path: Path) -> list:
    app = make_app(url, tmp_path)
    with app.app_context():
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
        db.engine.dispose()
    return differences


# -- what a deployment of the first version holds ------------------------------------------------

SHOP_DEPLOY = ('count=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))[\'resources\']))" '
               '"$1")\necho "applying $count changes"\n')
API = {"resourceType": "service", "resourceName": "api", "resourcePath": "services/api.json",
       "changeType": "UPDATE_IN_PLACE"}
DB_REPLACE = {"resourceType": "aws_db_instance", "resourceName": "main[0]",
              "resourcePath": "module.db.aws_db_instance.main[0]", "changeType": "REPLACE",
              "actions": ["create", "delete"], "action_reason": "replace_because_cannot_update"}
PASSWORDS = {"admin": "admin-password-1", "alice": "alice-password-1", "bob": "bob-password-1",
             "carol": "carol-password-1", "viewer": "viewer-password-1"}
TOKENS = {"alice": "rg_" + "a" * 43, "bob": "rg_" + "b" * 43, "revoked": "rg_" + "r" * 43,
          "expired": "rg_" + "e" * 43}


@dataclass
class Seeded:
    """The rows written at the first revision, by table, each with the id it was given."""

    rows: dict[str, list[dict]] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)  # names for the rows the checks use

    def of(self, table: str, name: str) -> dict:
        return next(row for row in self.rows[table] if row["id"] == self.ids[name])


def seed_first_schema(url: str, commit: str, repo: Path) -> Seeded:
    """Fill a database at FIRST_REVISION with what a team's first months leave behind.

    The INSERTs are built from the tables as that revision created them (reflected from
    the database, not from today's models), and ids come from the database's own
    sequences, as they would in production.
    """
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    metadata.reflect(engine)
    seeded = Seeded()
    hasher = PasswordHasher(time_cost=1, memory_cost=8192)
    base = utcnow().replace(microsecond=123456) - timedelta(days=3)

    def at(minutes: float):
        return base + timedelta(minutes=minutes)

    with engine.begin() as connection:
        def add(table: str, key: str | None = None, /, **values) -> int:
            """INSERT one row; `key` names it for the checks."""
            result = connection.execute(metadata.tables[table].insert().values(**values))
            row_id = result.inserted_primary_key[0]
            seeded.rows.setdefault(table, []).append({"id": row_id, **values})
            if key:
                seeded.ids[key] = row_id
            return row_id

        users = {}
        for number, name in enumerate(PASSWORDS):
            users[name] = add("users", name, login_id=f"login-{name}-{'x' * 20}", username=name,
                              email=f"{name}@example.com" if name != "viewer" else "",
                              password_hash=hasher.hash(PASSWORDS[name]), is_admin=name == "admin",
                              active=name != "carol", created_at=at(number))
        project = add("projects", "shop", name="shop", repo=str(repo), branch="main", hook_ref=None,
                      created_at=at(10))
        environment_defaults = dict(project_id=project, parallel_releases=False, hook_ref=None,
                                    hook_timeout_seconds=300, release_timeout_seconds=3600,
                                    allow_self_approval=False, wait_for_external_finish=False,
                                    approval_timeout_hours=None, created_at=at(11), updated_at=at(11))
        qa = add("environments", "qa", **{**environment_defaults, "name": "qa", "release_stream": "QA",
                                          "approval_workflow": True, "release_command": 'bash deploy.sh "$1"',
                                          "hook_timeout_seconds": 120, "release_timeout_seconds": 900})
        prod = add("environments", "prod", **{**environment_defaults, "name": "prod", "release_stream": "PROD",
                                              "approval_workflow": True, "hook_ref": "main",
                                              "release_command": 'bash deploy.sh "$1"',
                                              "approval_timeout_hours": 24.5, "updated_at": at(12)})
        preview = add("environments", "preview", **{**environment_defaults, "name": "preview",
                                                    "release_stream": "PREVIEW", "approval_workflow": False,
                                                    "parallel_releases": True, "release_command": None,
                                                    "wait_for_external_finish": True})
        add("variables", name="DEPLOY_TOKEN", environment_id=qa, value="qa-s3cret", secret=True, for_hooks=False)
        add("variables", name="DEPLOY_TOKEN", environment_id=prod, value="prod-s3cret", secret=True,
            for_hooks=False)
        add("variables", "region", name="REGION", environment_id=prod, value="eu-west-1", secret=False,
            for_hooks=True)
        add("grants", user_id=users["alice"], permission="trigger_release", environment_id=None, created_at=at(13))
        add("grants", user_id=users["alice"], permission="cancel_release", environment_id=qa, created_at=at(13))
        add("grants", user_id=users["bob"], permission="approve_release", environment_id=prod, created_at=at(14))
        add("grants", user_id=users["bob"], permission="approve_release", environment_id=qa, created_at=at(14))
        add("grants", user_id=users["carol"], permission="approve_release", environment_id=None,
            created_at=at(14))
        for name, minutes, expires, revoked in (("alice", 15, None, None), ("bob", 16, at(60 * 24 * 365), None),
                                                ("revoked", 17, None, at(30)), ("expired", 18, at(20), None)):
            token = TOKENS[name]
            add("api_tokens", f"token-{name}", user_id=users["alice" if name != "bob" else "bob"],
                name=f"ci {name}", token_hash=hashlib.sha256(token.encode()).hexdigest(), prefix=token[:10],
                created_at=at(minutes), expires_at=expires, last_used_at=at(minutes + 1) if name == "alice" else None,
                revoked_at=revoked)
        add("audit_events", actor_id=users["admin"], action="project", reason="project shop created", via="cli",
            details=None, created_at=at(10), release_id=None, environment_id=None, from_state=None, to_state=None)
        add("audit_events", actor_id=users["admin"], action="settings", environment_id=prod,
            reason="settings changed", via="ui", created_at=at(12), release_id=None, from_state=None, to_state=None,
            details={"changes": {"approval_timeout_hours": [None, 24.5]}})

        hook_path = "shop/pre_release_hooks/pre_release_hook.py"
        release_defaults = dict(kind="RELEASE", project_id=project, holds_slot=False, ref="main", commit=commit,
                                description="", resources=[API], triggered_by_id=users["alice"],
                                idempotency_key=None, parent_release_id=None, hook_path=None,
                                hook_ref_commit=None, hook_exit_code=None, hook_output="", hook_truncated=False,
                                hook_started_at=None, exec_command=None, exec_exit_code=None, exec_output="",
                                exec_truncated=False, exec_started_at=None, error=None, started_at=None,
                                pending_since=None, finished_at=None, heartbeat_at=None)
        prod_hook = dict(hook_path=hook_path, hook_ref_commit=commit, hook_exit_code=2,
                         hook_output="Environment Name: prod\nRelease Stream: PROD\nexit 2: PROD needs approval\n")

        def release(name: str, environment: int, state: str, minutes: int, events: list[tuple], **values) -> int:
            release_id = add("releases", name, environment_id=environment, state=state,
                             created_at=at(minutes), **{**release_defaults, **values})
            previous = None
            for offset, (to_state, actor, via, reason) in enumerate(events):
                add("audit_events", release_id=release_id, environment_id=environment,
                    actor_id=users[actor] if actor else None, action="state", from_state=previous,
                    to_state=to_state, reason=reason, via=via, details=None, created_at=at(minutes + offset))
                previous = to_state
            return release_id

        approved = release("approved", prod, "APPROVED", 100, [
            ("QUEUED", "alice", "api", "triggered"), ("READY", None, "worker", "dispatched"),
            ("PENDING_APPROVAL", None, "worker", "the hook exited 2"), ("APPROVED", "bob", "email", "ship it")],
            **prod_hook, description="api 1.4 — schnell, süß", hook_started_at=at(101), started_at=at(101),
            pending_since=at(102), finished_at=at(103))
        add("decisions", release_id=approved, user_id=users["bob"], decision="APPROVE", comment="ship it",
            via="email", created_at=at(103))
        release("bot", prod, "SUCCEEDED", 103, [
            ("IN_PROGRESS", "bob", "email", f"bot release for approved release #{approved}; the hook is skipped"),
            ("SUCCEEDED", None, "worker", "the release command exited 0")],
            kind="BOT", ref=commit, triggered_by_id=users["bob"], parent_release_id=approved,
            description="api 1.4 — schnell, süß", hook_path=hook_path, hook_ref_commit=commit,
            exec_command='bash deploy.sh "$1"', exec_exit_code=0, exec_output="applying 1 changes\n",
            exec_started_at=at(104), started_at=at(103), finished_at=at(105), heartbeat_at=at(105))
        rejected = release("rejected", prod, "REJECTED", 200, [
            ("QUEUED", "alice", "api", "triggered"), ("PENDING_APPROVAL", None, "worker", "the hook exited 2"),
            ("REJECTED", "bob", "api", "not on a Friday")],
            **prod_hook, resources=[API, DB_REPLACE], started_at=at(201), pending_since=at(202),
            finished_at=at(203))
        add("decisions", release_id=rejected, user_id=users["bob"], decision="REJECT", comment="not on a Friday",
            via="api", created_at=at(203))
        release("cancelled", prod, "CANCELLED", 300, [
            ("QUEUED", "alice", "api", "triggered"), ("CANCELLED", "alice", "ui", "cancelled by alice")],
            finished_at=at(301))
        release("failed", prod, "FAILED", 400, [
            ("QUEUED", "alice", "api", "triggered"),
            ("FAILED", None, "worker", "The pre-release hook timed out after 300 s and was killed.")],
            hook_path=hook_path, hook_ref_commit=commit, hook_output="x" * 5000 + "\n[output truncated]\n",
            hook_truncated=True, hook_started_at=at(401), started_at=at(401), finished_at=at(406),
            error="The pre-release hook timed out after 300 s and was killed.")
        # Holds prod's slot and waits for a decision nobody has made yet.
        release("pending", prod, "PENDING_APPROVAL", 500, [
            ("QUEUED", "alice", "api", "triggered"), ("PENDING_APPROVAL", None, "worker", "the hook exited 2")],
            **prod_hook, holds_slot=True, idempotency_key="build-1234", description="api 1.5",
            resources=[API, DB_REPLACE], hook_started_at=at(501), started_at=at(501), pending_since=at(502))
        release("queued", prod, "QUEUED", 600, [("QUEUED", "alice", "api", "triggered")], ref=None, commit=None,
                description="api 1.6, behind 1.5")
        release("qa_succeeded", qa, "SUCCEEDED", 700, [
            ("QUEUED", "alice", "api", "triggered"), ("IN_PROGRESS", None, "worker", "the hook exited 0"),
            ("SUCCEEDED", None, "worker", "the release command exited 0")],
            hook_path=hook_path, hook_ref_commit=commit, hook_exit_code=0, hook_output="Release Stream: QA\n",
            exec_command='bash deploy.sh "$1"', exec_exit_code=0, exec_output="applying 1 changes\ntoken ****\n",
            hook_started_at=at(701), exec_started_at=at(702), started_at=at(701), finished_at=at(703))
        release("qa_timed_out", qa, "TIMED_OUT", 800, [
            ("QUEUED", "alice", "api", "triggered"), ("TIMED_OUT", None, "worker", "timed out")],
            hook_path=hook_path, hook_ref_commit=commit, hook_exit_code=0, exec_command='bash deploy.sh "$1"',
            exec_output="applying 1 changes\n", started_at=at(801), exec_started_at=at(802), finished_at=at(817),
            error="The command timed out after 900 s and was killed.")
        # Parallel mode, waiting for CI to report `/finish`: running, but holding no slot.
        release("preview_running", preview, "IN_PROGRESS", 900, [
            ("QUEUED", "alice", "api", "triggered"), ("IN_PROGRESS", None, "worker", "dispatched in parallel")],
            exec_started_at=at(901), started_at=at(901), idempotency_key="pr-77")
    engine.dispose()
    return seeded


def assert_rows_kept(url: str, seeded: Seeded) -> None:
    """Every seeded row is still there, with every value it was written with."""
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    metadata.reflect(engine)
    try:
        with engine.connect() as connection:
            for table_name, rows in seeded.rows.items():
                assert table_name in metadata.tables, f"the upgrade dropped the table {table_name}"
                table = metadata.tables[table_name]
                gone = sorted(set(rows[0]) - set(table.c.keys()))
                assert not gone, (f"the upgrade removed {table_name}.{gone}; if a migration moved them, "
                                  f"check here where the values went")
                found = {row.id: dict(row._mapping) for row in connection.execute(
                    sa.select(*(table.c[name] for name in rows[0])).order_by(table.c.id))}
                assert sorted(found) == sorted(row["id"] for row in rows), f"rows of {table_name} lost or added"
                for row in rows:
                    assert found[row["id"]] == row, f"{table_name} row {row['id']} changed"
    finally:
        engine.dispose()


@pytest.fixture()
def shop_repo(tmp_path) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "shop-repo", {"shop/pre_release_hooks/pre_release_hook.py": SAMPLE_LIKE_HOOK,
                                              "deploy.sh": SHOP_DEPLOY})
    return repo, git(repo, "rev-parse", "HEAD")


@pytest.fixture()
def upgraded(empty_database, tmp_path, shop_repo) -> Seeded:
    """A database made by the first migration, filled, then upgraded to today's head."""
    repo, commit = shop_repo
    migrate(empty_database, tmp_path, "upgrade", FIRST_REVISION)
    seeded = seed_first_schema(empty_database, commit, repo)
    migrate(empty_database, tmp_path, "upgrade", "head")
    return seeded
