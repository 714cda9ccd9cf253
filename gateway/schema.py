"""Schema upgrades through Alembic, run by `gateway db upgrade` and on start-up.

For `serve` (`apart`), the upgrade runs in a child process of its own (forked, when this
process runs no other thread and has not loaded Alembic yet): Alembic, Mako and the
migration scripts (about 7 MB) then never stay in the long-running process, nor in the
workers it forks. When it fails there, it runs again here, which raises the error as
before. Other commands end soon: they upgrade in their own process (no fork to pay).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

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
