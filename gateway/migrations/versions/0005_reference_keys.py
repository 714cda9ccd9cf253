"""client codes and serials compared without regard to case, spaces, dashes and dots

`clients.code_key` and `licences.serial_key` hold the folded forms (see
`gateway.models.reference_key`), indexed, so that "sn-7f3a-2291" finds "SN-7F3A-2291".

Revision ID: 0005
Revises: 0004
"""
import re
import unicodedata

from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _key(value: str) -> str:
    # A frozen copy of gateway.models.reference_key: a migration must not change later.
    folded = unicodedata.normalize("NFKC", value).casefold()
    return "".join(c for c in folded if not (c.isspace() or c == "." or unicodedata.category(c) == "Pd"))


def _fill(table: str, column: str, key_column: str) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text(f"SELECT id, {column} FROM {table}")).all()
    for row_id, value in rows:
        bind.execute(sa.text(f"UPDATE {table} SET {key_column} = :key WHERE id = :id"),
                     {"key": _key(str(value)), "id": row_id})


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code_key', sa.String(length=64), nullable=False, server_default=''))
        batch_op.create_index(batch_op.f('ix_clients_code_key'), ['code_key'], unique=False)
    with op.batch_alter_table('licences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('serial_key', sa.String(length=128), nullable=False, server_default=''))
        batch_op.create_index(batch_op.f('ix_licences_serial_key'), ['serial_key'], unique=False)
    _fill('clients', 'code', 'code_key')
    _fill('licences', 'serial', 'serial_key')


def downgrade() -> None:
    with op.batch_alter_table('licences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_licences_serial_key'))
        batch_op.drop_column('serial_key')
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clients_code_key'))
        batch_op.drop_column('code_key')
