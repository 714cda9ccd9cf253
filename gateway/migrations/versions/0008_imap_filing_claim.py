"""imap filing claim: inbound_messages.filing_until replaces the "imap-moving:<row>" keys
that IMAP doors kept in gateway_state

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('filing_until', sa.DateTime(), nullable=True))
    # Claims of the former scheme: released by now or held by a door of the old version
    # (which stops for the upgrade); nothing reads them any more.
    op.execute("DELETE FROM gateway_state WHERE key LIKE 'imap-moving:%'")


def downgrade() -> None:
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_column('filing_until')
