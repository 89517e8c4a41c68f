"""Change windows, freezes and break-glass: a project's and an environment's windows and freezes, an environment's break-glass switch and review hours, a release's schedule and emergency review, and SCHEDULED among the states that hold the slot

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 02:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

SLOT_STATES_BEFORE = "NOT holds_slot OR state IN ('READY', 'PENDING_APPROVAL', 'IN_PROGRESS')"
SLOT_STATES_AFTER = "NOT holds_slot OR state IN ('READY', 'PENDING_APPROVAL', 'SCHEDULED', 'IN_PROGRESS')"
REVIEW_PENDING = 'break_glass_reason IS NOT NULL AND reviewed_at IS NULL'
RELEASE_COLUMNS = ('scheduled_reason', 'scheduled_until', 'break_glass_reason', 'review_due_at',
                   'reviewed_by_id', 'review_comment', 'reviewed_at', 'review_announced_at')


def upgrade():
    op.add_column('projects', sa.Column('change_windows', sa.JSON(), nullable=False, server_default='[]'))
    op.add_column('projects', sa.Column('freezes', sa.JSON(), nullable=False, server_default='[]'))
    # NULL: every existing environment takes its project's windows, which are none (always open).
    op.add_column('environments', sa.Column('change_windows', sa.JSON(), nullable=True))
    op.add_column('environments', sa.Column('freezes', sa.JSON(), nullable=False, server_default='[]'))
    op.add_column('environments', sa.Column('allow_break_glass', sa.Boolean(), nullable=False,
                                             server_default=sa.false()))
    op.add_column('environments', sa.Column('break_glass_review_hours', sa.Double(), nullable=False,
                                             server_default='24'))
    # SQLite cannot change a CHECK constraint in place: batch mode rebuilds the table (env.py turns
    # foreign keys off around it, so the rows that reference releases stay). The slot-holder index is
    # partial, which a rebuild must not lose: dropped and made again here, WHERE clause and all.
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_index('uq_releases_slot_holder', sqlite_where=sa.text('holds_slot'),
                            postgresql_where=sa.text('holds_slot'))
        batch_op.drop_constraint(batch_op.f('ck_releases_slot_only_when_active'), type_='check')
        batch_op.add_column(sa.Column('scheduled_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('scheduled_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('break_glass_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('review_due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('reviewed_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('review_comment', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('reviewed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('review_announced_at', sa.DateTime(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_releases_reviewed_by_id_users'), 'users', ['reviewed_by_id'],
                                    ['id'], ondelete='SET NULL')
        batch_op.create_check_constraint(batch_op.f('ck_releases_slot_only_when_active'), SLOT_STATES_AFTER)
        batch_op.create_index('uq_releases_slot_holder', ['environment_id'], unique=True,
                              sqlite_where=sa.text('holds_slot'), postgresql_where=sa.text('holds_slot'))
    op.create_index('ix_releases_review_pending', 'releases', ['id'], sqlite_where=sa.text(REVIEW_PENDING),
                    postgresql_where=sa.text(REVIEW_PENDING))


def downgrade():
    # A scheduled release has no state to go back to that would still hold the slot: it fails.
    op.execute("UPDATE releases SET state = 'FAILED', holds_slot = false, "
               "error = 'The database was downgraded while this release waited for its change window.' "
               "WHERE state = 'SCHEDULED'")
    op.drop_index('ix_releases_review_pending', table_name='releases')
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_index('uq_releases_slot_holder', sqlite_where=sa.text('holds_slot'),
                            postgresql_where=sa.text('holds_slot'))
        batch_op.drop_constraint(batch_op.f('ck_releases_slot_only_when_active'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_releases_reviewed_by_id_users'), type_='foreignkey')
        for column in reversed(RELEASE_COLUMNS):
            batch_op.drop_column(column)
        batch_op.create_check_constraint(batch_op.f('ck_releases_slot_only_when_active'), SLOT_STATES_BEFORE)
        batch_op.create_index('uq_releases_slot_holder', ['environment_id'], unique=True,
                              sqlite_where=sa.text('holds_slot'), postgresql_where=sa.text('holds_slot'))
    # Plain DROP COLUMN (see 0004): the tables keep their CHECK constraints.
    op.drop_column('environments', 'break_glass_review_hours')
    op.drop_column('environments', 'allow_break_glass')
    op.drop_column('environments', 'freezes')
    op.drop_column('environments', 'change_windows')
    op.drop_column('projects', 'freezes')
    op.drop_column('projects', 'change_windows')
