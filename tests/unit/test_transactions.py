"""Side effects run after commit, and only for what was committed."""
from __future__ import annotations

import sqlalchemy as sa

from webapp.extensions import db
from webapp.transactions import after_commit


def test_a_rolled_back_savepoint_drops_only_its_own_side_effects(app):
    ran = []
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        after_commit(ran.append, "outer")
        try:
            with db.session.begin_nested():
                after_commit(ran.append, "inside savepoint")
                raise RuntimeError("the savepoint fails")
        except RuntimeError:
            pass
        after_commit(ran.append, "after savepoint")
        db.session.commit()
    assert ran == ["outer", "after savepoint"]


def test_a_rolled_back_transaction_runs_nothing(app):
    ran = []
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        after_commit(ran.append, "never")
        db.session.rollback()
        db.session.commit()
    assert ran == []


def test_a_released_savepoint_runs_nothing_until_the_transaction_commits(app):
    ran = []
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        after_commit(ran.append, "before savepoint")
        with db.session.begin_nested():
            after_commit(ran.append, "inside savepoint")
        assert ran == []  # a dispatch's savepoint must not announce what is not committed yet
        db.session.commit()
    assert ran == ["before savepoint", "inside savepoint"]


def test_side_effects_marked_first_run_before_the_others_in_order(app):
    ran = []
    with app.app_context():
        db.session.execute(sa.text("SELECT 1"))
        after_commit(ran.append, "announce")
        after_commit(ran.append, "job 1", first=True)
        after_commit(ran.append, "version")
        after_commit(ran.append, "job 2", first=True)
        db.session.commit()
    assert ran == ["job 1", "job 2", "announce", "version"]
