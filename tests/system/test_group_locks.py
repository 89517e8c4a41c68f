"""A rule never points at nothing, across transactions (PostgreSQL: SQLite writes one at a
time): rules that name a group lock it for share, and a rename or delete of that group locks it
first, so one of the two waits for the other and then sees what it did."""
from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tests.helpers import wait_until
from tests.system.test_concurrency import waiting_for_a_lock
from webapp.extensions import db

DBA_RULE = {"name": "dba", "group": "dba", "approvals": 1}


class InThread:
    """fn() in an app context of its own, in a thread; `outcome` holds its result or exception."""

    def __init__(self, app, fn) -> None:
        self.outcome: list[object] = []

        def run() -> None:
            with app.app_context():
                try:
                    self.outcome.append(fn())
                except Exception as error:  # the test reads it
                    self.outcome.append(error)
                finally:
                    db.session.rollback()

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self) -> list[object]:
        self.thread.join(10)
        return self.outcome


@pytest.mark.postgresql
@pytest.mark.parametrize("change", ["DELETE FROM groups WHERE name = 'dba'",
                                    "UPDATE groups SET name = 'dbas' WHERE name = 'dba'"])
def test_rules_naming_a_group_being_renamed_or_deleted_wait_and_find_it_gone(app, api, new_environment, change):
    from webapp import approval_rules
    from webapp.transactions import write_transaction

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    assert api("admin").post("/api/v1/groups", json={"name": "dba"}).status_code == 201
    with app.app_context():
        holder, watcher = db.engine.connect(), db.engine.connect()
    try:
        holder.execute(sa.text(change))  # the rename or delete, not committed yet

        def check() -> list[str]:
            write_transaction()
            return approval_rules.missing_groups([DBA_RULE])

        checking = InThread(app, check)
        assert wait_until(lambda: waiting_for_a_lock(watcher) == 1), "the rules' check did not wait for the group"
        holder.commit()
        assert checking.join() == [["dba"]]
    finally:
        holder.close()
        watcher.close()


@pytest.mark.postgresql
def test_a_group_is_not_deleted_under_a_rule_being_written_that_names_it(app, api, new_environment):
    from webapp import groups
    from webapp.accounts import machine_actor

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    assert api("admin").post("/api/v1/groups", json={"name": "dba"}).status_code == 201
    with app.app_context():
        holder, watcher = db.engine.connect(), db.engine.connect()
    try:  # what a settings change naming dba holds until it commits: the share lock, then its rules
        holder.execute(sa.text("SELECT id FROM groups WHERE name = 'dba' FOR SHARE"))
        holder.execute(sa.text("UPDATE environments SET approval_rules = CAST(:rules AS JSON)"),
                       {"rules": '[{"name": "dba", "group": "dba", "approvals": 1}]'})
        deleting = InThread(app, lambda: groups.delete_group(machine_actor(), groups.get_group("dba")))
        assert wait_until(lambda: waiting_for_a_lock(watcher) == 1), "the delete did not wait for the rules"
        holder.commit()
        [outcome] = deleting.join()
    finally:
        holder.close()
        watcher.close()
    assert isinstance(outcome, groups.WrongState) and "svc/env name the group dba" in str(outcome)
    with app.app_context():
        assert groups.get_group("dba").name == "dba"


@pytest.mark.postgresql
def test_rules_being_written_elsewhere_that_name_the_same_group_do_not_hold_these_up(app, api, new_environment):
    """The rules' check locks the groups they name for share, not for update: another settings change
    naming dba (holding it for share until it commits) never makes this one wait."""
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    assert api("admin").post("/api/v1/groups", json={"name": "dba"}).status_code == 201
    with app.app_context():
        holder, watcher = db.engine.connect(), db.engine.connect()
    try:  # the other settings change's share lock, not committed yet
        holder.execute(sa.text("SELECT id FROM groups WHERE name = 'dba' FOR SHARE"))
        patching = InThread(app, lambda: api("admin").patch("/api/v1/projects/svc/environments/env",
                                                            json={"approval_rules": [DBA_RULE]}).status_code)
        assert wait_until(lambda: patching.outcome or waiting_for_a_lock(watcher))
        assert patching.outcome == [200], "the rules' check waited for another transaction's share lock on dba"
    finally:
        holder.close()
        watcher.close()
        patching.join()
