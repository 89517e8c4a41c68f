"""Two triggers with one Idempotency-Key racing (PostgreSQL: on SQLite a trigger's write
transaction keeps every other writer out, so its lookup always sees the first). The lookup
before the INSERT finds nothing; the other trigger commits the same key before this INSERT;
the unique index refuses the INSERT, and the trigger answers with the release that won."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.worker.run_path_support import PLAIN
from webapp.extensions import db
from webapp.models import Release
from webapp.releases import queue


@pytest.mark.postgresql
def test_a_trigger_that_loses_a_race_for_its_idempotency_key_answers_with_the_release_that_won(
        app, api, new_environment, monkeypatch):
    new_environment(PLAIN, approval_workflow=False, parallel_releases=True)
    lookup, won = queue._by_idempotency_key, []

    def another_trigger_commits_first(environment, user, key):
        if not won:  # the lookup before the INSERT, just before the other trigger commits
            with db.engine.begin() as other:  # its own connection
                won.append(other.execute(sa.insert(Release).values(
                    kind="RELEASE", project_id=environment.project_id, environment_id=environment.id,
                    state="QUEUED", description="", resources=[], triggered_by_id=user.id, idempotency_key=key,
                ).returning(Release.id)).scalar_one())
            return None
        return lookup(environment, user, key)

    monkeypatch.setattr(queue, "_by_idempotency_key", another_trigger_commits_first)
    response = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"resources": []},
                               headers={"Idempotency-Key": "deploy-7"})
    assert (response.status_code, response.json["id"]) == (200, won[0])
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Release)) == 1
