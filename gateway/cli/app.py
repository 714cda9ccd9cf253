"""What every command shares: `App` (the settings and the engine, opened on first use),
`pass_app` to hand it to a command, and `print_rows` for the listings.

Every command module imports this one, never the package's `__init__`, so that the `main`
group can import the command modules without a cycle.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from gateway import config, logs, schema
from gateway.cli import table, trouble
from gateway.db import make_engine

log = logging.getLogger(__name__)

# What the views and accounts functions return: one record, or a list of them.
Rows = dict[str, Any] | list[dict[str, Any]]


class App:
    """The settings and the engine of one command, opened on first use: a command that
    fails before it needs them (a usage error) never reads the configuration."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: config.Settings | None = None
        self._engine: Engine | None = None
        self.upgrade_apart = False  # `serve`: Alembic never loaded in this process (schema.py)

    @property
    def settings(self) -> config.Settings:
        """The loaded settings; a file that cannot be loaded is the command's failure
        (ClickException, or 75 for `ingest`). Starts the log file when one is set."""
        if self._settings is None:
            try:
                self._settings = config.load(self.config_path)
            except config.ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
            if self._settings.log.file:
                logs.to_file(self._settings.path(self._settings.log.file))
        return self._settings

    @property
    def engine(self) -> Engine:
        """The engine, on a schema upgraded to the newest version."""
        if self._engine is None:
            settings = self.settings
            try:
                self._engine = make_engine(settings)
                schema.upgrade(self._engine, apart=self.upgrade_apart)
            except (DBAPIError, OSError) as exc:
                raise database_trouble(settings, exc) from exc
        return self._engine

    def connect(self) -> tuple[config.Settings, Engine]:
        """The settings and the engine together, as `receive.pipe.ingest` asks for them."""
        return self.settings, self.engine

    def close(self) -> None:
        """Release the database connections and the log file when the command ends; never
        raises, since the command's outcome is decided by then."""
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.dispose()
            except Exception:
                log.warning("could not close the database connections", exc_info=True)
        logs.close()


pass_app = click.make_pass_decorator(App)


def database_trouble(settings: config.Settings, exc: BaseException) -> click.ClickException:
    """The one line a command ends with when the database stops it; the traceback goes to
    the log at debug level."""
    log.debug("database error", exc_info=exc)
    return click.ClickException(trouble.explain(settings.database_url, exc))


def print_rows(data: Rows, as_json: bool, columns: list[str] | None = None) -> None:
    """Write `data` as indented JSON, or as text: with `columns`, a table of those fields
    under a header; without, one `name  value` line per field, records apart by a blank line."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    if columns:
        table.echo(table.table(rows, columns))
        return
    for n, row in enumerate(rows):
        if n:
            click.echo("")
        table.echo(table.fields(row))
