"""Releases written straight into the database, a million in seconds: one INSERT … SELECT over
generate_series (PostgreSQL) or a recursive CTE (SQLite), never a row at a time from Python.

Only the bench does this; it reads the table's columns from the database (no app import), so a
move of the app's modules does not touch it.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

# Past releases end like this, one in 20 of each kind but SUCCEEDED (16 in 20).
_PAST_STATE = ("CASE {k} WHEN 16 THEN 'FAILED' WHEN 17 THEN 'FAILED' WHEN 18 THEN 'REJECTED' "
               "WHEN 19 THEN 'CANCELLED' ELSE 'SUCCEEDED' END")
RESOURCES = [{"resourceType": "service", "resourceName": "api", "resourcePath": "services/service-00.json",
              "changeType": "UPDATE_IN_PLACE"}]


def environment_ids(conn: sa.Connection, project: str | None = None) -> list[int]:
    query = "SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id"
    query += " WHERE p.name = :p ORDER BY e.id" if project else " ORDER BY e.id"
    return list(conn.execute(sa.text(query), {"p": project}).scalars())


def past_releases(engine: sa.Engine, count: int, project: str | None = None, days: float = 365) -> float:
    """`count` finished releases spread evenly over the environments (of `project`, or all), over
    the past `days`, older than anything live, each with two audit events (queued, final state).
    Returns the seconds it took."""
    import time

    started = time.monotonic()
    with engine.begin() as conn:
        envs = environment_ids(conn, project)
        _insert(conn, count, envs, state=_PAST_STATE.format(k=f"((i / {len(envs)}) % 20)"),
                holds_slot="FALSE", past=True, days=days)
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE releases")
            conn.exec_driver_sql("ANALYZE audit_events")
    return time.monotonic() - started


def live_releases(engine: sa.Engine, pending: int = 1, queued: int = 2) -> None:
    """In every environment, `pending` release(s) holding the slot and PENDING_APPROVAL and
    `queued` QUEUED behind: what a busy board shows, without running hundreds of hooks."""
    with engine.begin() as conn:
        envs = environment_ids(conn)
        per = pending + queued
        # i / n: the release's place in its environment's line (0 is the slot holder)
        state = f"CASE WHEN (i / {len(envs)}) < {pending} THEN 'PENDING_APPROVAL' ELSE 'QUEUED' END"
        slot = f"((i / {len(envs)}) < {pending})"
        _insert(conn, per * len(envs), envs, state=state, holds_slot=slot, past=False, days=1 / 24)


def _insert(conn: sa.Connection, count: int, envs: list[int], *, state: str, holds_slot: str, past: bool,
            days: float) -> None:
    if count <= 0:
        return
    if envs != list(range(envs[0], envs[0] + len(envs))):
        raise SystemExit("fill: the environments' ids are not contiguous; cannot spread releases over them.")
    pg = conn.dialect.name == "postgresql"
    first = (conn.execute(sa.text("SELECT max(id) FROM releases")).scalar() or 0) + 1
    user = conn.execute(sa.text("SELECT id FROM users ORDER BY id")).scalars().first()
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)  # naive UTC, as the app stores
    start = now - timedelta(days=days)
    step = days * 86400 * 0.99 / count
    if pg:
        source = "generate_series(0, :count - 1) AS n(i)"
        hexed = "lpad(to_hex(:first + i), 40, '0')"
        at = lambda extra: f"(CAST(:start AS timestamp) + make_interval(secs => i * :step + {extra}))"  # noqa: E731
        resources, false, prefix = "CAST(:resources AS json)", "FALSE", ""
    else:
        source = "n"
        hexed = "printf('%040x', :first + i)"
        at = lambda extra: f"strftime('%Y-%m-%d %H:%M:%f', :start, '+' || (i * :step + {extra}) || ' seconds')"  # noqa: E731
        resources, false = ":resources", "0"
        prefix = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :count) "
        holds_slot = {"FALSE": "0"}.get(holds_slot, holds_slot)
    s = f"({state})"
    exit_code = (f"CASE {s} WHEN 'SUCCEEDED' THEN 0 WHEN 'FAILED' THEN 1 WHEN 'REJECTED' THEN 2 "
                 f"WHEN 'PENDING_APPROVAL' THEN 2 ELSE NULL END")
    columns = ("id, kind, project_id, environment_id, state, holds_slot, ref, \"commit\", description, resources, "
               "triggered_by_id, hook_path, hook_ref_commit, hook_exit_code, hook_output, hook_truncated, "
               "exec_output, exec_truncated, error, created_at, started_at, pending_since, finished_at")
    values = (
        f":first + i, 'RELEASE', (SELECT project_id FROM environments WHERE id = :env0 + (i % :envs)), "
        f":env0 + (i % :envs), {s}, {holds_slot}, 'main', {hexed}, 'deploy build ' || (:first + i), {resources}, "
        f":user, 'hooks/pre_release_hook.py', {hexed}, {exit_code}, "
        f"CASE WHEN {exit_code} IS NULL THEN '' ELSE '1 change(s)' END, {false}, "
        f"CASE {s} WHEN 'SUCCEEDED' THEN 'deployed' ELSE '' END, {false}, "
        f"CASE {s} WHEN 'FAILED' THEN 'The pre-release hook exited 1.' ELSE NULL END, "
        f"{at(0)}, CASE {s} WHEN 'QUEUED' THEN NULL ELSE {at(1)} END, "
        f"CASE {s} WHEN 'PENDING_APPROVAL' THEN {at(2)} ELSE NULL END, "
        f"CASE WHEN {s} IN ('QUEUED', 'PENDING_APPROVAL') THEN NULL ELSE {at(40)} END")
    params = {"count": count, "first": first, "env0": envs[0], "envs": len(envs), "user": user,
              "start": start.strftime("%Y-%m-%d %H:%M:%S"), "step": step, "resources": json.dumps(RESOURCES)}
    conn.execute(sa.text(f"{prefix}INSERT INTO releases ({columns}) SELECT {values} FROM {source}"), params)
    last = first + count - 1
    events = ("INSERT INTO audit_events (release_id, environment_id, actor_id, action, from_state, to_state, "
              "reason, via, created_at) SELECT id, environment_id, {actor}, 'state', {before}, {after}, 'history', "
              "{via}, created_at FROM releases WHERE id BETWEEN :first AND :last")
    conn.execute(sa.text(events.format(actor=":user", before="NULL", after="'QUEUED'", via="'api'")),
                 {"user": user, "first": first, "last": last})
    if past:
        conn.execute(sa.text(events.format(actor="NULL", before="'QUEUED'", after="state", via="'worker'")),
                     {"first": first, "last": last})
    else:
        conn.execute(sa.text(events.format(actor="NULL", before="'QUEUED'", after="state", via="'worker'")
                             + " AND state <> 'QUEUED'"), {"first": first, "last": last})
    if pg:  # ids were given: move the sequence past them
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('releases', 'id'), max(id)) FROM releases"))
