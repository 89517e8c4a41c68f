"""Old data stays bounded and fast: retention of output and delivery logs, RQ job TTLs, and
the release list and dashboard queries read through indexes, never the whole history."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa
from redis import Redis

from webapp import retention
from webapp.extensions import db
from webapp.models import (
    AuditEvent,
    Decision,
    EmailLink,
    Environment,
    OutgoingMail,
    Project,
    Release,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)

NOW = utcnow()
OLD = NOW - timedelta(days=100)  # past the default 90 days of output and 30 days of logs
RECENT = NOW - timedelta(days=10)  # within 30 days
NOTE_90 = retention.NOTE.format(days=90)


@pytest.fixture()
def world(app):
    """One user, project, environment and webhook endpoint, written straight to the tables."""
    with app.app_context():
        user = User(username="alice", email="alice@example.com", password_hash="x")
        project = Project(name="shop", repo="/nonexistent")
        db.session.add_all([user, project])
        db.session.flush()
        environment = Environment(project_id=project.id, name="prod", release_stream="PROD")
        endpoint = WebhookEndpoint(name="ci", url="http://127.0.0.1:9/hook", secret="s", events=["*"])
        db.session.add_all([environment, endpoint])
        db.session.commit()
        return {"user": user.id, "project": project.id, "environment": environment.id, "endpoint": endpoint.id}


def add_release(world, *, state="SUCCEEDED", finished_at=OLD, hook_output="hook says go\n",
                exec_output="applied 3 changes\n", environment_id=None, **values) -> int:
    release = Release(project_id=world["project"], environment_id=environment_id or world["environment"],
                      state=state, finished_at=finished_at, hook_output=hook_output, exec_output=exec_output,
                      resources=[], triggered_by_id=world["user"], created_at=OLD - timedelta(hours=1), **values)
    db.session.add(release)
    db.session.commit()
    return release.id


def outputs(release_id: int) -> tuple[str, str]:
    db.session.expire_all()
    release = db.session.get(Release, release_id)
    return release.hook_output, release.exec_output


# -- hook and apply output --------------------------------------------------------------------------

def test_output_of_releases_finished_long_ago_is_replaced_by_a_note_and_recent_output_kept(app, world):
    with app.app_context():
        old = add_release(world)
        old_without_log = add_release(world, exec_output="")
        recent = add_release(world, finished_at=RECENT)
        pruned = retention.prune()
        assert outputs(old) == (NOTE_90, NOTE_90)
        assert outputs(old_without_log) == (NOTE_90, "")  # no note where nothing was kept
        assert outputs(recent) == ("hook says go\n", "applied 3 changes\n")
        assert pruned.outputs == 3 and not pruned.more
        assert NOTE_90.count("\n") == 0 and "90 days" in NOTE_90


def test_queued_running_and_pending_releases_are_never_touched(app, world):
    with app.app_context():
        live = [add_release(world, state=state, finished_at=None)
                for state in ("QUEUED", "READY", "PENDING_APPROVAL", "IN_PROGRESS")]
        # Even with a finish time (which only a bug could leave), a running release keeps its log.
        odd = add_release(world, state="IN_PROGRESS", finished_at=OLD)
        retention.prune(NOW + timedelta(days=365))
        for release_id in [*live, odd]:
            assert outputs(release_id) == ("hook says go\n", "applied 3 changes\n")


def test_the_release_its_decision_and_its_audit_trail_are_kept(app, world):
    with app.app_context():
        release_id = add_release(world, state="APPROVED", error=None)
        db.session.add(Decision(release_id=release_id, user_id=world["user"], decision="APPROVE",
                                comment="looks fine", via="email", created_at=OLD))
        for from_state, to_state in ((None, "QUEUED"), ("QUEUED", "READY"), ("READY", "PENDING_APPROVAL"),
                                     ("PENDING_APPROVAL", "APPROVED")):
            db.session.add(AuditEvent(release_id=release_id, environment_id=world["environment"], action="state",
                                      from_state=from_state, to_state=to_state, via="system", created_at=OLD))
        db.session.commit()
        retention.prune()
        db.session.expire_all()
        release = db.session.get(Release, release_id)
        assert release.state == "APPROVED" and release.hook_output == NOTE_90
        assert [(d.decision, d.comment, d.via) for d in release.decisions] == [("APPROVE", "looks fine", "email")]
        events = db.session.scalars(sa.select(AuditEvent.to_state).where(AuditEvent.release_id == release_id))
        assert list(events) == ["QUEUED", "READY", "PENDING_APPROVAL", "APPROVED"]


def test_pruning_goes_in_bounded_batches_and_carries_on_in_the_next_round(app, world):
    with app.app_context():
        # One finish time for all: the walk's cursor must tell them apart by id.
        ids = [add_release(world, exec_output="") for _ in range(23)]
        with recorded_statements() as statements:
            first = retention.prune(batch_size=5, max_batches=2)
        assert (first.outputs, first.more) == (10, True)
        updates = [params for statement, params in statements if statement.lstrip().upper().startswith("UPDATE")]
        assert len(updates) == 2 * 2  # hook and exec output per batch
        assert all(len(release_ids_in(params)) == 5 for params in updates)
        second = retention.prune(batch_size=5, max_batches=2)
        third = retention.prune(batch_size=5, max_batches=2)
        assert (second.outputs, second.more, third.outputs, third.more) == (10, True, 3, False)
        assert {outputs(release_id)[0] for release_id in ids} == {NOTE_90}


def test_pruning_again_changes_nothing_even_after_redis_lost_the_cursor(app, world):
    with app.app_context():
        release_id = add_release(world)
        assert retention.prune().outputs == 2
        assert retention.prune().outputs == 0  # the cursor is past it
        Redis.from_url(app.config["REDIS_URL"]).delete(retention.CURSOR_KEY)
        assert retention.prune().outputs == 0  # walked again from the start: the note stays as it was
        assert outputs(release_id) == (NOTE_90, NOTE_90)


def test_a_later_finish_is_pruned_once_its_time_comes(app, world):
    with app.app_context():
        first = add_release(world, finished_at=NOW - timedelta(days=91))
        later = add_release(world, finished_at=NOW - timedelta(days=89))
        retention.prune()
        assert outputs(first)[0] == NOTE_90 and outputs(later)[0] == "hook says go\n"
        retention.prune(NOW + timedelta(days=2))
        assert outputs(later)[0] == NOTE_90


def test_retention_of_zero_days_keeps_everything(app, world):
    app.config.update(OUTPUT_RETENTION_DAYS=0, NOTIFY_RETENTION_DAYS=0)
    with app.app_context():
        release_id = add_release(world, finished_at=NOW - timedelta(days=3000))
        mail_id = add_mail(world, status="sent", created_at=NOW - timedelta(days=3000))
        assert retention.prune() == retention.Pruned()
        assert outputs(release_id)[0] == "hook says go\n"
        assert db.session.get(OutgoingMail, mail_id) is not None


def test_the_note_names_the_configured_number_of_days(app, world):
    app.config.update(OUTPUT_RETENTION_DAYS=7)
    with app.app_context():
        release_id = add_release(world, finished_at=NOW - timedelta(days=8))
        retention.prune()
        assert outputs(release_id)[0] == "[Output removed 7 days after the release finished (OUTPUT_RETENTION_DAYS).]"


# -- mail, webhook deliveries and email links -----------------------------------------------------------

def add_mail(world, *, status: str, created_at, release_id=None) -> int:
    mail = OutgoingMail(kind="release_outcome", user_id=world["user"], to_address="alice@example.com",
                        release_id=release_id, status=status, created_at=created_at)
    db.session.add(mail)
    db.session.commit()
    return mail.id


def add_delivery(world, *, status: str, created_at, last_attempt_at=None) -> int:
    import uuid

    delivery = WebhookDelivery(delivery_id=str(uuid.uuid4()), endpoint_id=world["endpoint"], event="release.failed",
                               body="{}", status=status, created_at=created_at, last_attempt_at=last_attempt_at)
    db.session.add(delivery)
    db.session.commit()
    return delivery.id


def add_link(world, release_id: int, *, expires_at, mail_id=None, used_at=None) -> int:
    import secrets

    link = EmailLink(token_hash=secrets.token_hex(32), user_id=world["user"], release_id=release_id,
                     mail_id=mail_id, action="approve", created_at=expires_at - timedelta(hours=72),
                     expires_at=expires_at, used_at=used_at)
    db.session.add(link)
    db.session.commit()
    return link.id


def remaining(model, ids: list[int]) -> list[int]:
    db.session.expire_all()
    return [row_id for row_id in ids if db.session.get(model, row_id) is not None]


def test_old_finished_mail_deliveries_and_spent_links_are_deleted_and_the_rest_kept(app, world):
    with app.app_context():
        release_id = add_release(world, finished_at=RECENT)
        old_sent = add_mail(world, status="sent", created_at=OLD, release_id=release_id)
        old_mails = [old_sent, *(add_mail(world, status=status, created_at=OLD)
                                 for status in ("outbox", "skipped", "failed"))]
        kept_mails = [add_mail(world, status="sent", created_at=RECENT),
                      *(add_mail(world, status=status, created_at=OLD)
                        for status in ("pending", "retrying", "sending"))]
        old_deliveries = [add_delivery(world, status=status, created_at=OLD) for status in ("succeeded", "failed")]
        kept_deliveries = [
            add_delivery(world, status="succeeded", created_at=RECENT),
            add_delivery(world, status="succeeded", created_at=OLD, last_attempt_at=RECENT),  # redelivered lately
            add_delivery(world, status="retrying", created_at=OLD)]
        old_links = [add_link(world, release_id, expires_at=OLD, mail_id=old_sent, used_at=OLD - timedelta(hours=1)),
                     add_link(world, release_id, expires_at=OLD)]
        kept_links = [add_link(world, release_id, expires_at=RECENT), add_link(world, release_id, expires_at=NOW)]

        pruned = retention.prune()
        assert (pruned.mails, pruned.deliveries, pruned.links) == (4, 2, 2)
        assert remaining(OutgoingMail, old_mails) == [] and remaining(OutgoingMail, kept_mails) == kept_mails
        assert remaining(WebhookDelivery, old_deliveries) == []
        assert remaining(WebhookDelivery, kept_deliveries) == kept_deliveries
        assert remaining(EmailLink, old_links) == [] and remaining(EmailLink, kept_links) == kept_links
        assert db.session.get(Release, release_id) is not None
        assert retention.prune() == retention.Pruned()


def test_a_link_outliving_its_mail_loses_only_the_reference(app, world):
    with app.app_context():
        release_id = add_release(world, finished_at=RECENT)
        mail_id = add_mail(world, status="sent", created_at=OLD, release_id=release_id)
        link_id = add_link(world, release_id, expires_at=RECENT, mail_id=mail_id)
        assert retention.prune().mails == 1
        db.session.expire_all()
        assert db.session.get(EmailLink, link_id).mail_id is None


def test_log_rows_are_deleted_in_bounded_batches(app, world):
    with app.app_context():
        for _ in range(12):
            add_mail(world, status="sent", created_at=OLD)
        first = retention.prune(batch_size=5, max_batches=2)
        assert (first.mails, first.more) == (10, True)
        second = retention.prune(batch_size=5, max_batches=2)
        assert (second.mails, second.more) == (2, False)
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutgoingMail)) == 0


# -- the release list and the dashboard read through indexes -------------------------------------------

@contextmanager
def recorded_statements() -> Iterator[list[tuple[str, object]]]:
    """The SQL statements (with their parameters) run inside the block."""
    statements: list[tuple[str, object]] = []

    def record(_connection, _cursor, statement, parameters, _context, _executemany):
        statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)


def release_ids_in(parameters) -> list:
    values = parameters.values() if isinstance(parameters, dict) else parameters
    flat = []
    for value in values:
        flat.extend(value if isinstance(value, list | tuple) else [value])
    return [value for value in flat if isinstance(value, int)]


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
