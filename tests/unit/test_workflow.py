"""The release workflow end to end: API → queue → real RQ worker → real hook → state."""
from __future__ import annotations

import sqlalchemy as sa

from tests.helpers import release, state, trigger
from webapp.extensions import db
from webapp.models import AuditEvent, Release

CHANGES = [
    {"resourceType": "service", "resourceName": "api", "resourcePath": "services/api.json",
     "changeType": "UPDATE_IN_PLACE"},
    {"resourceType": "database", "resourceName": "orders", "resourcePath": "db/orders.json",
     "changeType": "DELETE"},
]






def test_prod_release_waits_for_approval_and_payload_reaches_the_hook(api, shop, run_jobs):
    release_id = trigger(api, path="shop/prod", resources=CHANGES)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "PENDING_APPROVAL"
    assert data["hook"]["exit_code"] == 2
    output = data["hook"]["output"]
    assert "Environment Name: prod" in output
    assert "Release Stream: PROD" in output
    for change in CHANGES:
        assert f"Resource Type: {change['resourceType']}" in output
        assert f"Resource Name: {change['resourceName']}" in output
        assert f"Resource Path: {change['resourcePath']}" in output
        assert f"Change Type: {change['changeType']}" in output
    assert len(data["commit"]) == 40


def test_qa_release_runs_the_release_command_and_succeeds(api, shop, run_jobs):
    release_id = trigger(api, path="shop/qa", resources=CHANGES)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "SUCCEEDED", data
    assert "Release Stream: QA" in data["hook"]["output"]
    assert "applying 2 changes" in data["execution"]["output"]
    assert data["execution"]["exit_code"] == 0


def test_approval_creates_a_bot_release_that_applies_the_same_changes(api, shop, run_jobs):
    first = trigger(api, path="shop/prod", resources=CHANGES)
    run_jobs()
    second = trigger(api, path="shop/prod", resources=CHANGES)
    assert release(api, second)["state"] == "QUEUED"
    response = api("approver").post(f"/api/v1/releases/{first}/approve", json={"comment": "looks fine"})
    assert response.status_code == 200, response.json
    approved = response.json
    assert approved["state"] == "APPROVED"
    assert approved["decisions"][0]["comment"] == "looks fine"
    bot_id = approved["bot_release_id"]
    bot = release(api, bot_id)
    assert bot["kind"] == "BOT" and bot["triggered_by"] == "approver"
    assert bot["resources"] == approved["resources"] and bot["commit"] == approved["commit"]
    assert release(api, second)["state"] == "QUEUED"  # the slot went straight to the bot release
    run_jobs()
    assert release(api, bot_id)["state"] == "SUCCEEDED"
    assert release(api, second)["state"] == "PENDING_APPROVAL"


def test_reject_frees_the_queue(app, api, shop, run_jobs):
    first = trigger(api, path="shop/prod", resources=CHANGES)
    run_jobs()
    second = trigger(api, path="shop/prod", resources=CHANGES)
    response = api("approver").post(f"/api/v1/releases/{first}/reject", json={"comment": "no"})
    assert response.status_code == 200
    assert response.json["state"] == "REJECTED"
    run_jobs()
    assert release(api, second)["state"] == "PENDING_APPROVAL"
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Release.id)).where(Release.kind == "BOT")) == 0


def test_queued_releases_take_the_free_slot_oldest_first(app, api, shop, run_jobs):
    """SPEC §3: QUEUED waits for the slot FIFO by trigger time; each slot freed goes to the oldest."""
    running = trigger(api, path="shop/qa", resources=CHANGES)
    queued = [trigger(api, path="shop/qa", resources=CHANGES) for _ in range(3)]
    assert state(api, running) == "READY" and [state(api, i) for i in queued] == ["QUEUED"] * 3
    run_jobs()  # each release's hook and apply, one after another, through the real worker
    assert [state(api, i) for i in [running, *queued]] == ["SUCCEEDED"] * 4
    with app.app_context():
        left_the_queue = db.session.scalars(sa.select(AuditEvent.release_id).where(
            AuditEvent.from_state == "QUEUED").order_by(AuditEvent.id)).all()
    assert left_the_queue == [running, *queued]
