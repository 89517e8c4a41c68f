"""Indexes: an environment's history and settings changes a page at a time; finished releases in finishing order (retention)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 15:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SETTINGS_ONLY = sa.text('release_id IS NULL')


def upgrade():
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.create_index('ix_releases_environment_history', ['environment_id', 'id'], unique=False)
        batch_op.create_index('ix_releases_finished', ['finished_at', 'id'], unique=False)

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_environment_settings', ['environment_id', 'id'], unique=False,
                              sqlite_where=SETTINGS_ONLY, postgresql_where=SETTINGS_ONLY)


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_environment_settings', sqlite_where=SETTINGS_ONLY,
                            postgresql_where=SETTINGS_ONLY)

    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_index('ix_releases_finished')
        batch_op.drop_index('ix_releases_environment_history')
