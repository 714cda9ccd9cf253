"""lz4 values: PostgreSQL compresses the big values with lz4 (a message's bytes, an
attachment's, an outbound mail's text and HTML)

PostgreSQL compresses a value of more than about 2 KB when it stores it. Its own method
(pglz) cost a backlog of 2,000 mails about 0.5 s of the server's time, most of it on
bytes that barely compress (base64 attachments); lz4 does the same work several times
faster and compresses nearly as well. Values stored before keep their method. A server
that cannot (older than 14, or built without lz4: `pg_settings` then does not offer it)
keeps pglz; SQLite compresses nothing.

Revision ID: 0012_lz4_values
Revises: 0011_case_sla_changes
"""
from alembic import op
import sqlalchemy as sa

revision = '0012_lz4_values'
down_revision = '0011_case_sla_changes'
branch_labels = None
depends_on = None

COLUMNS = (('inbound_messages', 'raw'), ('attachments', 'data'), ('outbound_messages', 'text'),
           ('outbound_messages', 'html'))


def _lz4_offered() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == 'postgresql' and bool(bind.scalar(sa.text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")))


def upgrade() -> None:
    if _lz4_offered():
        for table, column in COLUMNS:
            op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4')


def downgrade() -> None:
    if _lz4_offered():
        for table, column in COLUMNS:
            op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION DEFAULT')
