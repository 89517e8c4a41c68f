"""Environments: sandbox_paths, the host paths an environment's release command may also see (a JSON list, empty for every existing environment)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    # The server default fills the existing rows: none of them binds anything.
    op.add_column('environments', sa.Column('sandbox_paths', sa.JSON(), nullable=False, server_default='[]'))


def downgrade():
    # A plain DROP COLUMN (SQLite 3.35 and later, PostgreSQL): rebuilding the table in batch
    # mode would be needed only by older SQLite, and could lose the table's CHECK constraint.
    op.drop_column('environments', 'sandbox_paths')
