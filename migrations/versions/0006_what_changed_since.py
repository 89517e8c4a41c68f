"""What changed since the last release: a release's since, a project's web_url_template, an environment's authors_may_not_approve (off for every existing environment)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 21:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('releases', sa.Column('since', sa.JSON(), nullable=True))
    op.add_column('projects', sa.Column('web_url_template', sa.String(length=1000), nullable=True))
    op.add_column('environments', sa.Column('authors_may_not_approve', sa.Boolean(), nullable=False,
                                             server_default=sa.false()))


def downgrade():
    # Plain DROP COLUMN (see 0004): the environments table keeps its CHECK constraint.
    op.drop_column('environments', 'authors_may_not_approve')
    op.drop_column('projects', 'web_url_template')
    op.drop_column('releases', 'since')
