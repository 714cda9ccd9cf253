"""The Alembic migrations build exactly the schema the models describe, on both databases;
a database already at the newest revision is recognised without Alembic; PostgreSQL
compresses the big values with lz4."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from gateway import intake, schema
from gateway.config import DatabaseSettings, Settings
from gateway.db import make_engine
from gateway.models import Base


def test_migrations_match_the_models(engine) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_the_head_read_from_the_scripts_is_alembic_s() -> None:
    assert schema._head() == ScriptDirectory.from_config(schema.alembic_config()).get_current_head()


def test_only_a_database_at_the_head_skips_alembic(engine, tmp_path) -> None:
    head = schema._head()
    assert schema._at_head(engine)
    try:
        _set_version(engine, "0010_licence_notices")
        assert not schema._at_head(engine)
    finally:  # the PostgreSQL database is the next test's too
        _set_version(engine, head)
    empty = make_engine(Settings(database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'empty.sqlite3'}")))
    try:
        assert not schema._at_head(empty)
    finally:
        empty.dispose()


def _set_version(engine, version) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": version})


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite compresses nothing
def test_postgresql_stores_big_values_with_lz4(engine) -> None:
    """A message's bytes, an attachment's and a mail's text and HTML are compressed with lz4
    (cheaper for the server than its own pglz), and read back byte for byte."""
    raw = b"Subject: big\r\n\r\n" + b"".join(b"line %d of a long and repetitive body\r\n" % n for n in range(5000))
    stored = intake.store(engine, raw, door="pipe")
    with engine.connect() as connection:
        methods = dict(connection.execute(text(
            "SELECT attrelid::regclass::text || '.' || attname, attcompression FROM pg_attribute "
            "WHERE (attrelid, attname) IN (('inbound_messages'::regclass, 'raw'), ('attachments'::regclass, 'data'),"
            " ('outbound_messages'::regclass, 'text'), ('outbound_messages'::regclass, 'html'))")).all())
        assert methods == dict.fromkeys(
            ["inbound_messages.raw", "attachments.data", "outbound_messages.text", "outbound_messages.html"], "l")
        row = connection.execute(text("SELECT raw, pg_column_compression(raw) FROM inbound_messages WHERE id = :id"),
                                 {"id": stored.id}).one()
    assert row == (raw, "lz4")
