"""The migrations build exactly the schema the models describe, with the invariants in it,
and every migration can be undone and redone.

That an existing database keeps every row through `db upgrade` is in
test_migration_upgrades.py.
"""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.unit.migration_support import (
    database_state,
    empty_database,  # noqa: F401 - a fixture, used by name
    migrate,
    revisions_oldest_first,
    schema_differences,
)
from webapp.extensions import db


def test_migrated_schema_matches_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


def test_the_slot_holder_index_is_unique_and_partial(app):
    with app.app_context():
        indexes = {index["name"]: index for index in sa.inspect(db.engine).get_indexes("releases")}
    slot = indexes["uq_releases_slot_holder"]
    assert slot["unique"] and slot["column_names"] == ["environment_id"]


def test_the_database_refuses_a_second_slot_holder(app, new_environment):
    from webapp.models import Environment, Release

    new_environment({"README": "x\n"})
    with app.app_context():
        environment = db.session.scalar(sa.select(Environment))

        def holder() -> Release:
            return Release(project_id=environment.project_id, environment_id=environment.id, state="READY",
                           holds_slot=True, resources=[])

        db.session.add(holder())
        db.session.commit()
        db.session.add(holder())
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
        db.session.add(Release(project_id=environment.project_id, environment_id=environment.id,
                               state="FAILED", holds_slot=True, resources=[]))
        with pytest.raises(sa.exc.IntegrityError):  # only active states may hold the slot
            db.session.commit()
        db.session.rollback()


def test_every_migration_can_be_undone_and_redone(empty_database, tmp_path):
    revisions = revisions_oldest_first()
    previous = "base"
    for revision in revisions:
        migrate(empty_database, tmp_path, "upgrade", revision)
        built = database_state(empty_database)
        assert built[1] == revision
        migrate(empty_database, tmp_path, "downgrade", previous)
        assert database_state(empty_database)[1] == (None if previous == "base" else previous)
        migrate(empty_database, tmp_path, "upgrade", revision)
        assert database_state(empty_database) == built, f"{revision} does not rebuild what it built"
        previous = revision
    migrate(empty_database, tmp_path, "downgrade", "base")
    assert database_state(empty_database) == (set(), None)
    migrate(empty_database, tmp_path, "upgrade", "head")
    assert database_state(empty_database)[1] == revisions[-1]
    assert schema_differences(empty_database, tmp_path) == []
