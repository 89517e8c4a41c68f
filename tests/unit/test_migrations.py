"""The migrations build exactly the schema the models describe, with the invariants in it;
an existing database keeps every row through `db upgrade` and the app works on it; and
every migration can be undone and redone.

The data test fills a database built by the FIRST migration, the way a deployment of the
first version left it, and upgrades it to whatever the head is today, so each new
migration is covered without touching this file. A migration that renames, moves or
drops an old column fails it on purpose: teach `assert_rows_kept` where the value went.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from argon2 import PasswordHasher
from redis import Redis

from tests.conftest import POSTGRES_URL, run_queue
from tests.helpers import SAMPLE_LIKE_HOOK, git, make_repo
from webapp.extensions import db
from webapp.models import utcnow

ROOT_DIR = Path(__file__).resolve().parents[2]
FIRST_REVISION = "0001"  # the schema `seed_first_schema` writes for
_databases = itertools.count()


def test_migrated_schema_matches_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


def test_the_slot_holder_index_is_unique_and_partial(app):
    with app.app_context():
        indexes = {index["name"]: index for index in sa.inspect(db.engine).get_indexes("releases")}
    slot = indexes["uq_releases_slot_holder"]
    assert slot["unique"] and slot["column_names"] == ["environment_id"]


def test_the_database_refuses_a_second_slot_holder(app, new_environment):
    from webapp.models import Environment, Release

    new_environment({"README": "x\n"})
    with app.app_context():
        environment = db.session.scalar(sa.select(Environment))

        def holder() -> Release:
            return Release(project_id=environment.project_id, environment_id=environment.id, state="READY",
                           holds_slot=True, resources=[])

        db.session.add(holder())
        db.session.commit()
        db.session.add(holder())
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
        db.session.add(Release(project_id=environment.project_id, environment_id=environment.id,
                               state="FAILED", holds_slot=True, resources=[]))
        with pytest.raises(sa.exc.IntegrityError):  # only active states may hold the slot
            db.session.commit()
        db.session.rollback()


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


def test_upgrading_from_the_first_migration_keeps_every_row(upgraded, empty_database, tmp_path):
    tables, version = database_state(empty_database)
    assert version == revisions_oldest_first()[-1]
    assert_rows_kept(empty_database, upgraded)
    assert schema_differences(empty_database, tmp_path) == []
    # Back to the first revision and up again: the old rows ride through both ways.
    migrate(empty_database, tmp_path, "downgrade", FIRST_REVISION)
    assert database_state(empty_database)[1] == FIRST_REVISION
    assert_rows_kept(empty_database, upgraded)
    migrate(empty_database, tmp_path, "upgrade", "head")
    assert database_state(empty_database) == (tables, version)
    assert_rows_kept(empty_database, upgraded)


def test_the_app_works_on_an_upgraded_database(upgraded, empty_database, tmp_path, redis_url):
    from worker.queues import RELEASES_QUEUE

    Redis.from_url(redis_url).flushdb()
    ids = upgraded.ids
    app = make_app(empty_database, tmp_path, redis_url)
    client = app.test_client()

    def call(who: str, method: str, url: str, headers: dict | None = None, **kwargs):
        return getattr(client, method)(f"/api/v1{url}", headers={"Authorization": f"Bearer {TOKENS[who]}",
                                                                  **(headers or {})}, **kwargs)

    def read(release: str) -> dict:
        return call("alice", "get", f"/releases/{ids[release]}").json

    try:
        assert client.get("/api/v1/health").json == {"status": "ok"}

        # Old passwords sign in through the form; a deactivated user still cannot.
        for name, expected in (("bob", 302), ("carol", 401)):
            browser = app.test_client()
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/sign-in").text).group(1)
            response = browser.post("/sign-in", data={"csrf_token": csrf, "username": name,
                                                      "password": PASSWORDS[name]})
            assert response.status_code == expected, name
        assert browser.get("/approvals").status_code == 302  # carol's client: not signed in
        assert app.test_client().get("/").status_code == 302

        # Old tokens work; revoked and expired ones still do not.
        assert call("revoked", "get", "/projects").status_code == 401
        assert call("expired", "get", "/projects").status_code == 401
        listed = call("alice", "get", "/projects/shop/environments/prod/releases").json["items"]
        prod_names = ["queued", "pending", "failed", "cancelled", "rejected", "bot", "approved"]
        assert [(item["id"], item["state"]) for item in listed] == [
            (ids[name], upgraded.of("releases", name)["state"]) for name in prod_names]

        approved = read("approved")
        assert approved["description"] == "api 1.4 — schnell, süß"
        assert approved["bot_release_id"] == ids["bot"]
        assert [(d["by"], d["decision"], d["via"], d["comment"]) for d in approved["decisions"]] == [
            ("bob", "APPROVE", "email", "ship it")]
        events = call("alice", "get", f"/releases/{ids['approved']}/events").json["items"]
        assert [(e["to"], e["by"], e["via"]) for e in events] == [
            ("QUEUED", "alice", "api"), ("READY", None, "worker"), ("PENDING_APPROVAL", None, "worker"),
            ("APPROVED", "bob", "email")]
        assert read("rejected")["resources"] == [API, DB_REPLACE]
        assert read("pending")["decisions"] == [] and read("failed")["hook"]["truncated"] is True

        prod = call("alice", "get", "/projects/shop/environments/prod").json
        assert [r["id"] for r in prod["active"]] == [ids["pending"]]
        assert [r["id"] for r in prod["queue"]] == [ids["queued"]]
        assert prod["approval_timeout_hours"] == 24.5 and prod["mode"] == "approval"
        assert prod["sandbox_paths"] == []  # 0004: no environment of before binds a host path
        assert {v["name"]: v["value"] for v in prod["variables"]} == {"DEPLOY_TOKEN": None, "REGION": "eu-west-1"}

        # The idempotency key of a release made before the upgrade still answers with it.
        again = call("alice", "post", "/projects/shop/environments/prod/releases", json={"resources": [API]},
                     headers={"Idempotency-Key": "build-1234"})
        assert again.status_code == 200 and again.json["id"] == ids["pending"]

        # A new release runs its hook and command; its id follows the old ones.
        new = call("alice", "post", "/projects/shop/environments/qa/releases", json={"resources": [API]})
        assert new.status_code == 202, new.json
        assert new.json["id"] > max(row["id"] for row in upgraded.rows["releases"])
        run_queue(app, RELEASES_QUEUE)
        done = call("alice", "get", f"/releases/{new.json['id']}").json
        assert done["state"] == "SUCCEEDED", done
        assert "applying 1 changes" in done["execution"]["output"]

        # The decision-free slot holder is approved: its bot release runs, then the release
        # queued behind it takes the slot and waits for approval in its turn.
        decided = call("bob", "post", f"/releases/{ids['pending']}/approve", json={"comment": "after the upgrade"})
        assert decided.status_code == 200, decided.json
        run_queue(app, RELEASES_QUEUE)
        pending = read("pending")
        assert pending["state"] == "APPROVED"
        assert [(d["by"], d["decision"]) for d in pending["decisions"]] == [("bob", "APPROVE")]
        bot = call("alice", "get", f"/releases/{pending['bot_release_id']}").json
        assert bot["state"] == "SUCCEEDED" and bot["parent_release_id"] == ids["pending"]
        assert read("queued")["state"] == "PENDING_APPROVAL"

        # CI reports the finish of a preview release that was running across the upgrade.
        finished = call("alice", "post", f"/releases/{ids['preview_running']}/finish",
                        json={"result": "SUCCEEDED", "log": "deployed by CI run 991"})
        assert finished.status_code == 200 and finished.json["state"] == "SUCCEEDED"
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


def test_0004_gives_existing_environments_no_host_paths_and_its_downgrade_keeps_them_and_their_check(
        empty_database, tmp_path):
    migrate(empty_database, tmp_path, "upgrade", "0003")
    engine = sa.create_engine(empty_database)

    def environments() -> sa.Table:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=["projects", "environments"])
        return metadata.tables["environments"]

    try:
        now = utcnow()
        settings = {"release_stream": "PROD", "approval_workflow": True, "parallel_releases": False,
                    "hook_timeout_seconds": 300, "release_timeout_seconds": 3600, "allow_self_approval": False,
                    "wait_for_external_finish": False, "created_at": now, "updated_at": now}
        with engine.begin() as connection:
            project_id = connection.execute(sa.text(
                "INSERT INTO projects (name, repo, branch, created_at) VALUES ('shop', '/r', 'main', :now) "
                "RETURNING id"), {"now": now}).scalar_one()
            connection.execute(environments().insert().values(project_id=project_id, name="prod", **settings))
        migrate(empty_database, tmp_path, "upgrade", "0004")
        table = environments()
        with engine.begin() as connection:
            assert connection.execute(sa.select(table.c.name, table.c.sandbox_paths)).all() == [("prod", [])]
            connection.execute(table.insert().values(project_id=project_id, name="qa", **settings,
                                                     sandbox_paths=[{"path": "/srv/shop", "writable": True}]))
        migrate(empty_database, tmp_path, "downgrade", "0003")
        table = environments()
        assert "sandbox_paths" not in table.c
        with engine.connect() as connection:
            assert connection.execute(sa.select(table.c.name).order_by(table.c.id)).scalars().all() == ["prod", "qa"]
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:  # one_mode survived
            connection.execute(table.update().values(parallel_releases=True))
    finally:
        engine.dispose()


def test_every_migration_can_be_undone_and_redone(empty_database, tmp_path):
    revisions = revisions_oldest_first()
    previous = "base"
    for revision in revisions:
        migrate(empty_database, tmp_path, "upgrade", revision)
        built = database_state(empty_database)
        assert built[1] == revision
        migrate(empty_database, tmp_path, "downgrade", previous)
        assert database_state(empty_database)[1] == (None if previous == "base" else previous)
        migrate(empty_database, tmp_path, "upgrade", revision)
        assert database_state(empty_database) == built, f"{revision} does not rebuild what it built"
        previous = revision
    migrate(empty_database, tmp_path, "downgrade", "base")
    assert database_state(empty_database) == (set(), None)
    migrate(empty_database, tmp_path, "upgrade", "head")
    assert database_state(empty_database)[1] == revisions[-1]
    assert schema_differences(empty_database, tmp_path) == []


def test_0005_gives_existing_environments_the_default_rule_and_counts_old_approvals_for_it(
        empty_database, tmp_path, shop_repo):
    repo, commit = shop_repo
    migrate(empty_database, tmp_path, "upgrade", FIRST_REVISION)
    seeded = seed_first_schema(empty_database, commit, repo)
    migrate(empty_database, tmp_path, "upgrade", "0004")
    migrate(empty_database, tmp_path, "upgrade", "0005")
    engine = sa.create_engine(empty_database)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=["environments", "decisions", "grants", "releases"])
        environments, decisions = metadata.tables["environments"], metadata.tables["decisions"]
        with engine.connect() as connection:
            rules = connection.execute(sa.select(environments.c.approval_rules)).scalars().all()
            assert rules and rules == [[{"name": "default", "group": None, "approvals": 1}]] * len(rules)
            kept = connection.execute(sa.select(decisions.c.decision, decisions.c.rules, decisions.c.comment)
                                      .order_by(decisions.c.id)).all()
        assert kept == [("APPROVE", ["default"], "ship it"), ("REJECT", [], "not on a Friday")]
        assert len(kept) == len(seeded.rows["decisions"])
        # A second approval of one release is now possible, a repeat by the same person is not.
        approved = seeded.ids["approved"]
        users = {row["username"]: row["id"] for row in seeded.rows["users"]}
        row = {"release_id": approved, "decision": "APPROVE", "comment": "", "via": "api", "created_at": utcnow()}
        with engine.begin() as connection:
            connection.execute(decisions.insert().values(user_id=users["alice"], **row))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(decisions.insert().values(user_id=users["alice"], **row))
        # A grant names a user or a group, never both or neither.
        grants = metadata.tables["grants"]
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(grants.insert().values(user_id=None, group_id=None, permission="trigger_release",
                                                      created_at=utcnow()))
        # Down again: one decision per release, the first kept.
        migrate(empty_database, tmp_path, "downgrade", "0004")
        assert_rows_kept(empty_database, seeded)
    finally:
        engine.dispose()
