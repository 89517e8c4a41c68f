"""Slack app: channels, posted messages, linked Slack users and their one-time codes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('slack_link_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_slack_link_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_link_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_slack_link_codes_code_hash'))
    )
    op.create_index(op.f('ix_slack_link_codes_user_id'), 'slack_link_codes', ['user_id'], unique=False)
    op.create_table('slack_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('slack_user_id', sa.String(length=32), nullable=False),
    sa.Column('slack_username', sa.String(length=100), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_slack_links_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_links')),
    sa.UniqueConstraint('team_id', 'slack_user_id', name='uq_slack_links_slack_user')
    )
    op.create_index(op.f('ix_slack_links_user_id'), 'slack_links', ['user_id'], unique=False)
    op.create_table('slack_channels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=80), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_slack_channels_environment_id_environments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_channels')),
    sa.UniqueConstraint('channel', 'environment_id', name='uq_slack_channels_scope')
    )
    op.create_table('slack_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('audit_event_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(length=80), nullable=False),
    sa.Column('ts', sa.String(length=32), nullable=True),
    sa.Column('shown', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['audit_event_id'], ['audit_events.id'], name=op.f('fk_slack_messages_audit_event_id_audit_events'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_slack_messages_release_id_releases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_messages')),
    sa.UniqueConstraint('audit_event_id', 'channel', name='uq_slack_messages_event_channel')
    )
    op.create_index(op.f('ix_slack_messages_release_id'), 'slack_messages', ['release_id'], unique=False)
    op.create_index('ix_slack_messages_status_due', 'slack_messages', ['status', 'next_attempt_at'], unique=False)


def downgrade():
    # Dropping a table drops its indexes.
    op.drop_table('slack_messages')
    op.drop_table('slack_channels')
    op.drop_table('slack_links')
    op.drop_table('slack_link_codes')
