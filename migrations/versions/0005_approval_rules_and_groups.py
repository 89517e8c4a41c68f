"""Approval rules and groups: groups and their members, grants to a group, an environment's approval_rules (the default rule for every existing environment), a release's rules, verdict reason and digest, and several approvals per release

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 20:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

DEFAULT_RULES_JSON = '[{"name": "default", "group": null, "approvals": 1}]'


def upgrade():
    op.create_table('groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_groups')),
    sa.UniqueConstraint('name', name=op.f('uq_groups_name'))
    )
    op.create_table('group_members',
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], name=op.f('fk_group_members_group_id_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_group_members_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'user_id', name=op.f('pk_group_members'))
    )
    op.create_index(op.f('ix_group_members_user_id'), 'group_members', ['user_id'], unique=False)

    # SQLite cannot alter a column or add a constraint in place: batch mode rebuilds these two
    # tables (neither has a CHECK constraint that a rebuild could lose).
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('group_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_grants_group_id_groups'), 'groups', ['group_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_grants_group_id'), ['group_id'], unique=False)
        batch_op.create_unique_constraint('uq_grants_group_scope', ['group_id', 'permission', 'environment_id'])
        batch_op.create_check_constraint(batch_op.f('ck_grants_user_or_group'), '(user_id IS NULL) <> (group_id IS NULL)')

    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_decisions_release_id'), type_='unique')
        batch_op.add_column(sa.Column('rules', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('digest', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_decisions_release_id'), ['release_id'], unique=False)
        batch_op.create_unique_constraint('uq_decisions_once', ['release_id', 'user_id', 'decision'])
    # Every approval given before counted for the one rule there was.
    op.execute("UPDATE decisions SET rules = '[\"default\"]' WHERE decision = 'APPROVE'")

    # The server default gives every existing environment the default rule: today's behaviour.
    op.add_column('environments', sa.Column('approval_rules', sa.JSON(), nullable=False,
                                             server_default=DEFAULT_RULES_JSON))
    op.add_column('releases', sa.Column('approval_rules', sa.JSON(), nullable=True))
    op.add_column('releases', sa.Column('approval_reason', sa.Text(), nullable=True))
    op.add_column('releases', sa.Column('approval_digest', sa.String(length=64), nullable=True))


def downgrade():
    op.drop_column('releases', 'approval_digest')
    op.drop_column('releases', 'approval_reason')
    op.drop_column('releases', 'approval_rules')
    op.drop_column('environments', 'approval_rules')  # plain DROP COLUMN: keeps its CHECK (see 0004)
    # Back to one decision per release: the first of each release's is kept.
    op.execute("DELETE FROM decisions WHERE id NOT IN (SELECT MIN(id) FROM decisions GROUP BY release_id)")
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_constraint('uq_decisions_once', type_='unique')
        batch_op.drop_index(batch_op.f('ix_decisions_release_id'))
        batch_op.drop_column('digest')
        batch_op.drop_column('rules')
        batch_op.create_unique_constraint(batch_op.f('uq_decisions_release_id'), ['release_id'])
    # Grants to groups have no user to go back to.
    op.execute("DELETE FROM grants WHERE group_id IS NOT NULL")
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_grants_user_or_group'), type_='check')
        batch_op.drop_constraint('uq_grants_group_scope', type_='unique')
        batch_op.drop_index(batch_op.f('ix_grants_group_id'))
        batch_op.drop_constraint(batch_op.f('fk_grants_group_id_groups'), type_='foreignkey')
        batch_op.drop_column('group_id')
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=False)
    op.drop_index(op.f('ix_group_members_user_id'), table_name='group_members')
    op.drop_table('group_members')
    op.drop_table('groups')
