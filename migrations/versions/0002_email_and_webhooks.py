"""Email: outgoing mail (and the development outbox) and one-use decision links; webhook endpoints and deliveries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 13:00:49.055964

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('webhook_endpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('secret', sa.String(length=255), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('all_environments', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("format IN ('json', 'slack')", name=op.f('ck_webhook_endpoints_format')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints'))
    )
    op.create_table('webhook_endpoint_environments',
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_endpoint_environments_endpoint_id_webhook_endpoints'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_webhook_endpoint_environments_environment_id_environments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('endpoint_id', 'environment_id', name=op.f('pk_webhook_endpoint_environments'))
    )
    op.create_table('outgoing_mails',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('to_address', sa.String(length=255), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=True),
    sa.Column('environment_id', sa.Integer(), nullable=True),
    sa.Column('audit_event_id', sa.Integer(), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body_text', sa.Text(), nullable=False),
    sa.Column('body_html', sa.Text(), nullable=False),
    sa.Column('links', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['audit_event_id'], ['audit_events.id'], name=op.f('fk_outgoing_mails_audit_event_id_audit_events'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_outgoing_mails_environment_id_environments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_outgoing_mails_release_id_releases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_outgoing_mails_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outgoing_mails')),
    sa.UniqueConstraint('audit_event_id', 'user_id', name='uq_outgoing_mails_event_user')
    )
    with op.batch_alter_table('outgoing_mails', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outgoing_mails_release_id'), ['release_id'], unique=False)
        batch_op.create_index('ix_outgoing_mails_status_due', ['status', 'next_attempt_at'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.String(length=36), nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('audit_event_id', sa.Integer(), nullable=True),
    sa.Column('event', sa.String(length=40), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('retries', sa.Integer(), nullable=False),
    sa.Column('response_code', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('history', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['audit_event_id'], ['audit_events.id'], name=op.f('fk_webhook_deliveries_audit_event_id_audit_events'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_webhook_deliveries_release_id_releases'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('audit_event_id', 'endpoint_id', name='uq_webhook_deliveries_event_endpoint'),
    sa.UniqueConstraint('delivery_id', name=op.f('uq_webhook_deliveries_delivery_id'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_endpoint_id'), ['endpoint_id'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_status_due', ['status', 'next_attempt_at'], unique=False)

    op.create_table('email_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=False),
    sa.Column('mail_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_reason', sa.String(length=200), nullable=True),
    sa.CheckConstraint("action IN ('approve', 'reject')", name=op.f('ck_email_links_action')),
    sa.ForeignKeyConstraint(['mail_id'], ['outgoing_mails.id'], name=op.f('fk_email_links_mail_id_outgoing_mails'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['release_id'], ['releases.id'], name=op.f('fk_email_links_release_id_releases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_email_links_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_email_links_token_hash'))
    )
    with op.batch_alter_table('email_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_links_mail_id'), ['mail_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_email_links_release_id'), ['release_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_email_links_user_id'), ['user_id'], unique=False)



def downgrade():
    with op.batch_alter_table('email_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_links_user_id'))
        batch_op.drop_index(batch_op.f('ix_email_links_release_id'))
        batch_op.drop_index(batch_op.f('ix_email_links_mail_id'))

    op.drop_table('email_links')
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_status_due')
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_endpoint_id'))

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('outgoing_mails', schema=None) as batch_op:
        batch_op.drop_index('ix_outgoing_mails_status_due')
        batch_op.drop_index(batch_op.f('ix_outgoing_mails_release_id'))

    op.drop_table('outgoing_mails')
    op.drop_table('webhook_endpoint_environments')
    op.drop_table('webhook_endpoints')
