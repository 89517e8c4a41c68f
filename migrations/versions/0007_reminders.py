"""Reminders: an environment's reminder_hours (none for every existing environment) and when a pending release was last reminded of

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 22:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('environments', sa.Column('reminder_hours', sa.Double(), nullable=True))
    op.add_column('releases', sa.Column('reminded_at', sa.DateTime(), nullable=True))


def downgrade():
    # Plain DROP COLUMN (see 0004): the tables keep their CHECK constraints.
    op.drop_column('releases', 'reminded_at')
    op.drop_column('environments', 'reminder_hours')
