"""case sla changes: when a case's criticality changed, and since when it has priority

`cases.criticality_changed_at` is set when a customer or an agent changes the criticality of
an open case (`[CRITICITE 1]`), `cases.priority_since` when the case gets priority; the
escalation job counts each first-response delay from them (from the opening when empty).

Revision ID: 0011_case_sla_changes
Revises: 0010_licence_notices
"""
from alembic import op
import sqlalchemy as sa

revision = '0011_case_sla_changes'
down_revision = '0010_licence_notices'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('criticality_changed_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('priority_since', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('priority_since')
        batch_op.drop_column('criticality_changed_at')
