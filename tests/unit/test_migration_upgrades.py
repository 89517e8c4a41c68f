"""An existing database keeps every row through `db upgrade` and the app works on it.

The data tests fill a database built by the FIRST migration, the way a deployment of the
first version left it (tests/unit/migration_support.py), and upgrade it to whatever the head is
today, so each new migration is covered without touching this file; 0004 and 0005 are checked
for what they give existing rows, and that their downgrades keep them.
"""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from redis import Redis

from tests.fixtures.services import run_queue
from tests.unit.migration_support import (
    API,
    DB_REPLACE,
    FIRST_REVISION,
    PASSWORDS,
    TOKENS,
    assert_rows_kept,
    database_state,
    empty_database,  # noqa: F401 - a fixture, used by name
    make_app,
    migrate,
    revisions_oldest_first,
    schema_differences,
    seed_first_schema,
    shop_repo,  # noqa: F401 - a fixture, used by name
    upgraded,  # noqa: F401 - a fixture, used by name
)
from webapp.extensions import db
from webapp.models import utcnow


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
