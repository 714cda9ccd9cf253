"""licence expiry notices: a licence's contacts warned before it ends

`licence_notices` holds one row per licence and end date whose contacts were warned
`[licences] expiry_notice_days` before that date (the job `expiry-notice`).

Revision ID: 0010_licence_notices
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = '0010_licence_notices'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('licence_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('licence_id', sa.Integer(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['licence_id'], ['licences.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('licence_id', 'ends_on')
    )


def downgrade() -> None:
    op.drop_table('licence_notices')
