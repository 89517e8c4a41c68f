"""Old data stays fast: the release list and the dashboard's queries read through indexes,
never the whole history, and find live releases by state and each environment's last finished
release without a sort.
"""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.unit.retention_support import (
    OLD,
    add_release,
    recorded_statements,
    world,  # noqa: F401 - a fixture, used by name
)
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, Release

# -- the release list and the dashboard read through indexes -------------------------------------------


def query_plan(statement: str, parameters) -> list[str]:
    """The plan's lines: SQLite's EXPLAIN QUERY PLAN details, PostgreSQL's EXPLAIN text."""
    with db.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            return [row[-1] for row in rows]
        # The test tables are small, where a sequential scan is cheapest whatever indexes exist;
        # with it priced out, the plan shows whether an index can serve the query at all.
        connection.exec_driver_sql("SET enable_seqscan = off")
        return [row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()]


# Partial indexes hold only the few rows their WHERE names (webapp/models/): reading one through is no
# walk of the history.
PARTIAL_INDEXES = ("ix_releases_review_pending",)


def full_scans(plan: list[str]) -> list[str]:
    """Plan lines that read a whole table of history (releases or audit events)."""
    history = r"(releases|audit_events)\w*"
    return [line for line in plan
            if (re.match(rf"SCAN {history}\b", line) or re.search(rf"Seq Scan on {history}\b", line))
            and not any(f"USING INDEX {index}" in line for index in PARTIAL_INDEXES)]


def sorts(plan: list[str]) -> list[str]:
    return [line for line in plan if "TEMP B-TREE FOR ORDER BY" in line or re.search(r"\bSort\b", line)]


@pytest.fixture()
def long_history(app, world):
    """Two environments with a few thousand finished releases between them and a little live work."""
    with app.app_context():
        other = Environment(project_id=world["project"], name="qa", release_stream="QA")
        db.session.add(other)
        db.session.commit()
        rows = [{"project_id": world["project"], "environment_id": env, "state": state, "resources": [],
                 "triggered_by_id": world["user"], "finished_at": OLD, "created_at": OLD}
                for env in (world["environment"], other.id)
                for state in ("SUCCEEDED", "FAILED", "REJECTED", "CANCELLED") * 300]
        db.session.execute(sa.insert(Release), rows)
        # Two settings changes long ago, then every release's own events after them.
        db.session.execute(sa.insert(AuditEvent), [
            {"environment_id": world["environment"], "action": "settings", "via": "api"}] * 2)
        release_ids = db.session.scalars(sa.select(Release.id).where(Release.environment_id == world["environment"]))
        db.session.execute(sa.insert(AuditEvent), [
            {"release_id": release_id, "environment_id": world["environment"], "action": "state",
             "from_state": "QUEUED", "to_state": "SUCCEEDED", "via": "system"} for release_id in release_ids])
        db.session.commit()
        for state, holds in (("PENDING_APPROVAL", True), ("QUEUED", False)):
            add_release(world, state=state, finished_at=None, holds_slot=holds)
        if db.engine.dialect.name == "postgresql":
            # What autovacuum does in production. Releasegate never runs ANALYZE on SQLite, whose
            # planner then goes by its built-in guesses; with statistics (no STAT4) it would take
            # the live query's `state IN (…)` for most of the table and scan it all.
            with db.engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE")
                connection.commit()
        return world


def index_searches(plan: list[str]) -> str:
    """The parts of a plan that say how rows are found: SQLite's SEARCH lines, PostgreSQL's index
    names and conditions."""
    return "\n".join(line for line in plan if re.search(r"SEARCH|Index|Cond", line))


def test_the_dashboard_and_the_environment_history_never_read_the_whole_history(app, long_history, people, web):
    client = web("admin")
    with app.app_context():
        first_page = client.get("/projects/shop/environments/prod")
        assert first_page.status_code == 200
        older = re.search(r"before=(\d+)", first_page.text).group(1)
        pages = ["/", "/fragments/dashboard", "/projects/shop/environments/prod",
                 f"/projects/shop/environments/prod?before={older}",
                 "/projects/shop/environments/prod?state=FAILED",
                 f"/projects/shop/environments/prod?state=FAILED&before={older}",
                 "/fragments/projects/shop/environments/prod"]
        with recorded_statements() as statements:
            for url in pages:
                assert client.get(url).status_code == 200, url
            for url in ("/api/v1/projects/shop/environments/prod/releases",
                        f"/api/v1/projects/shop/environments/prod/releases?before={older}&state=SUCCEEDED"):
                assert client.get(url, headers=people.headers("admin")).status_code == 200, url

        seen = {"history": 0, "settings": 0, "live": 0}
        for statement, parameters in statements:
            if not re.search(r"\b(FROM|JOIN) (releases|audit_events)\b", statement):
                continue
            plan = query_plan(statement, parameters)
            assert full_scans(plan) == [], f"{statement}\n{plan}"
            if re.search(r"ORDER BY releases\.id DESC\s+LIMIT", statement):
                seen["history"] += 1  # a page comes straight off an index, newest first: no sort of all of it
                assert sorts(plan) == [], f"{statement}\n{plan}"
            elif re.search(r"FROM audit_events\b.*release_id IS NULL", statement, re.S):
                seen["settings"] += 1  # the settings changes, found without walking the releases' events
                assert re.search(r"ix_audit_events_environment_settings|release_id IS NULL", index_searches(plan)), plan
            elif re.search(r"WHERE releases\.state IN", statement):
                seen["live"] += 1
        assert seen["history"] >= 6 and seen["settings"] >= 4 and seen["live"] >= 3, seen


def live_query_plan(environment_id: int | None) -> list[str]:
    from webapp.views.pages import live_releases

    with recorded_statements() as statements:
        live = live_releases(environment_id)
    assert [row.state for lists in live.values() for row in lists["active"] + lists["queue"]] == [
        "PENDING_APPROVAL", "QUEUED"]
    (statement, parameters), = [item for item in statements if "FROM releases" in item[0]]
    return query_plan(statement, parameters)


def test_the_dashboards_live_query_finds_live_releases_by_state(app, long_history):
    with app.app_context():
        plan = live_query_plan(None)
    assert full_scans(plan) == [] and "state" in index_searches(plan), plan


def test_an_environments_live_query_finds_live_releases_by_state(app, long_history):
    with app.app_context():
        plan = live_query_plan(long_history["environment"])
    assert full_scans(plan) == [] and "state" in index_searches(plan), plan


def test_each_environments_last_finished_release_comes_off_the_history_index_without_a_sort(app, long_history):
    from webapp.views.pages import FINISHED_STATES, live_releases

    with app.app_context():
        with recorded_statements() as statements:
            live = live_releases()
        (statement, parameters), = [item for item in statements if "FROM releases" in item[0]]
        plan = query_plan(statement, parameters)
        expected = {environment_id: db.session.scalar(
            sa.select(sa.func.max(Release.id)).where(Release.environment_id == environment_id,
                                                     Release.state.in_(FINISHED_STATES)))
            for environment_id in live}
    assert {environment_id: [row.id for row in lists["finished"]] for environment_id, lists in live.items()} == {
        environment_id: [last] for environment_id, last in expected.items()}
    # PostgreSQL's semi-join may sort the one id per environment the subquery gives (Sort Key:
    # SubPlan): that is no sort of the history. Any other sort is.
    keyed_by_subplan = {index for index, line in enumerate(plan[:-1])
                        if re.search(r"\bSort\b", line) and "Sort Key: ((SubPlan" in plan[index + 1]}
    history_sorts = [line for index, line in enumerate(plan) if line in sorts([line])
                     and index not in keyed_by_subplan and "Sort Key: ((SubPlan" not in line]
    assert full_scans(plan) == [] and history_sorts == [], plan
    assert "ix_releases_environment_history" in index_searches(plan) or "environment_id" in index_searches(plan), plan
