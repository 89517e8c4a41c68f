"""The environment's lock (transactions.lock_environment) is FOR NO KEY UPDATE (PostgreSQL; SQLite
renders no lock clause): a release being inserted elsewhere holds its environment FOR KEY SHARE
(the foreign key's check), and must never make the lock wait. With FOR UPDATE it would, and two
triggers that had each inserted their release would wait for each other's key share: a deadlock."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger, wait_until
from tests.system.test_concurrency import waiting_for_a_lock
from tests.system.test_group_locks import InThread
from webapp.extensions import db


@pytest.mark.postgresql
def test_a_release_being_inserted_elsewhere_never_holds_up_a_trigger_of_the_same_environment(
        app, api, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    with app.app_context():
        holder, watcher = db.engine.connect(), db.engine.connect()
    try:  # what another trigger's INSERT holds until it commits
        holder.execute(sa.text("SELECT id FROM environments WHERE name = 'env' FOR KEY SHARE"))
        triggering = InThread(app, lambda: trigger(api))
        assert wait_until(lambda: triggering.outcome or waiting_for_a_lock(watcher))
        assert triggering.outcome, "the trigger waited for another transaction's key share on its environment"
    finally:
        holder.close()
        watcher.close()
        [release_id] = triggering.join()
    assert state(api, release_id) == "READY"
