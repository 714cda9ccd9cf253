"""`gateway db`: the database schema."""
from __future__ import annotations

import click

from gateway.cli.app import App, pass_app


@click.group("db")
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Create or upgrade the schema to the newest version."""
    app.engine  # noqa: B018 - opening the engine upgrades the schema, and `close` disposes it
    click.echo("database is up to date")
