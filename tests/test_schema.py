"""The Alembic migrations build exactly the schema the models describe, on both databases;
a database already at the newest revision is recognised without Alembic."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from gateway import schema
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
