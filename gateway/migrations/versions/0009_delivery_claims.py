"""delivery claims: the sender that locked a delivery, stored beside its lock

`deliveries.claim` holds the random id of the claim (one per batch of a sender) that locked
the delivery until `locked_until`: a sender sends and marks only what it still holds.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('claim')
