"""files travel: outbound messages carry the stored files of the message they are about

`outbound_files` links an outbound message to the stored attachments it carries (the
outbox refers to files, it never copies them); `attachments.inline` marks the images a
sender's mail client showed within the text.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inline', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table('outbound_files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('message_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attachment_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['attachment_id'], ['attachments.id'], ),
    sa.ForeignKeyConstraint(['message_id'], ['outbound_messages.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbound_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbound_files_message_id'), ['message_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbound_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbound_files_message_id'))
    op.drop_table('outbound_files')
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_column('inline')
