"""Schema upgrades through Alembic, run by `gateway db upgrade` and on start-up.

For `serve` (`apart`), the upgrade runs in a child process of its own (forked, when this
process runs no other thread and has not loaded Alembic yet): Alembic, Mako and the
migration scripts (about 7 MB) then never stay in the long-running process, nor in the
workers it forks. When it fails there, it runs again here, which raises the error as
before. Other commands end soon: they upgrade in their own process (no fork to pay).

A database already at the newest revision, the usual case, is told apart without Alembic
(`_at_head`): loading it and its migration scripts cost each command about 0.1 s of CPU.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from gateway.apart import call as apart_call

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, apart: bool = False) -> None:
    """Bring the database to the newest schema; safe to run at every start. `apart`: in a
    child process when this one can fork (gateway/apart.py); should it fail there, here."""
    if _at_head(engine):
        if apart:  # `serve` forks its workers next: they carry no connection of this process
            engine.dispose()
        return
    if apart:
        try:
            apart_call(_upgrade_in_child, engine, keeps_out="alembic")
            return
        except Exception:  # noqa: BLE001 - done again here, which raises the error as before
            pass
    _upgrade(engine)


def _upgrade(engine: Engine) -> None:
    from alembic import command
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")


def _upgrade_in_child(engine: Engine) -> None:
    """The child uses connections of its own, never this process's."""
    engine.dispose(close=False)
    _upgrade(engine)
    engine.dispose()


def _at_head(engine: Engine) -> bool:
    """Whether the database's one revision is the newest script's: then Alembic would do
    nothing. Anything else (no version table yet, an older or unknown revision) is
    Alembic's to decide, as is a failure to read the table; a failure to connect or to
    begin raises."""
    head = _head()
    if head is None:
        return False
    with engine.connect() as connection:
        # Begun as Alembic begins (on SQLite, BEGIN IMMEDIATE): a database that this user
        # cannot write stops the command here as it did there, whatever the command.
        connection.begin()
        try:
            versions = connection.scalars(text("SELECT version_num FROM alembic_version")).all()
        except DBAPIError:
            return False
    return versions == [head]


def _head() -> str | None:
    """The revision of the migration scripts that no other script revises, read from their
    `revision` and `down_revision` lines; None unless every script has such a line and
    exactly one is the head (Alembic then decides)."""
    scripts = sorted((MIGRATIONS / "versions").glob("[!_]*.py"))
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in scripts:
        source = script.read_text(encoding="utf-8")
        revisions.update(re.findall(r"^revision = '([^']+)'$", source, re.MULTILINE))
        for line in re.findall(r"^down_revision = (.+)$", source, re.MULTILINE):
            revised.update(re.findall(r"'([^']+)'", line))
    heads = revisions - revised
    return heads.pop() if len(revisions) == len(scripts) and len(heads) == 1 else None
