"""Invariants of SPEC §3 across processes: several processes trigger, approve, reject
and cancel against one environment at once while a real worker runs the hooks."""
from __future__ import annotations

import multiprocessing
import random
import time

import sqlalchemy as sa

from tests.helpers import assert_one_slot_holder_at_a_time
from webapp.extensions import db
from webapp.models import AuditEvent, Decision, Release

ENV = "/api/v1/projects/svc/environments/env"
CHANGE = [{"resourceType": "t", "resourceName": "n", "resourcePath": "p", "changeType": "CREATE"}]


def act(config: dict, role: str, token: str, seconds: float, seed: int) -> list[tuple[str, int, str]]:
    """One process: its own app and connections, hammering the API for `seconds`."""
    from webapp import create_app

    app = create_app(config)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(seed)
    seen: list[tuple[str, int, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if role == "trigger":
            response = client.post(f"{ENV}/releases", json={"resources": CHANGE}, headers=headers)
            seen.append(("trigger", response.status_code, response.get_data(as_text=True)))
            time.sleep(0.05)
            continue
        wanted = "PENDING_APPROVAL" if role == "decide" else "QUEUED"
        items = client.get(f"{ENV}/releases?state={wanted}", headers=headers).json["items"]
        for item in items:
            action = rng.choice(["approve", "reject"]) if role == "decide" else "cancel"
            response = client.post(f"/api/v1/releases/{item['id']}/{action}", json={}, headers=headers)
            seen.append((action, response.status_code, response.get_data(as_text=True)))
        time.sleep(0.01)
    return seen


def test_concurrent_processes_keep_every_invariant(app, app_config, api, people, new_environment, start_worker):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    people.add("approver2", "approve_release")
    start_worker()
    roles = [("trigger", "dev"), ("trigger", "admin"), ("decide", "approver"), ("decide", "approver2"),
             ("decide", "approver"), ("cancel", "dev")]
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(roles)) as pool:
        results = pool.starmap(act, [(app_config, role, people.tokens[name], 5.0, seed)
                                     for seed, (role, name) in enumerate(roles)])
    outcomes = [outcome for result in results for outcome in result]
    summary = sorted({(action, status) for action, status, _ in outcomes})
    assert any(action == "approve" and status == 200 for action, status, _ in outcomes), summary
    for action, status, body in outcomes:
        assert status < 500 and "database is locked" not in body, (action, status, body)
        if action == "trigger":
            assert status == 202, body
        elif status != 200:
            assert status in (403, 409) and '"error"' in body, (action, status, body)

    with app.app_context():
        pending = db.session.scalar(sa.select(sa.func.count(Release.id)).where(Release.state == "PENDING_APPROVAL"))
        holders = db.session.scalar(sa.select(sa.func.count(Release.id)).where(Release.holds_slot))
        assert pending <= 1 and holders <= 1
        decided = db.session.execute(sa.select(Release.id, Release.state).where(
            Release.state.in_(("APPROVED", "REJECTED")))).all()
        decisions = dict(db.session.execute(sa.select(Decision.release_id, sa.func.count())
                                            .group_by(Decision.release_id)).all())
        assert all(decisions.get(release_id) == 1 for release_id, _ in decided)
        approved = [release_id for release_id, state in decided if state == "APPROVED"]
        bots = dict(db.session.execute(sa.select(Release.parent_release_id, sa.func.count())
                                       .where(Release.kind == "BOT").group_by(Release.parent_release_id)).all())
        assert sorted(bots) == sorted(approved) and set(bots.values()) <= {1}
        # Replaying the audit trail: never two slot holders at once.
        assert_one_slot_holder_at_a_time(db.session.execute(
            sa.select(AuditEvent.release_id, AuditEvent.to_state)
            .where(AuditEvent.action == "state").order_by(AuditEvent.id)))
