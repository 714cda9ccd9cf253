"""The `gateway` command (entry point `gateway.cli:main`): the `main` group and the command
groups it gathers, one module each. Wiring only: every command calls into the package.

A command module imports `gateway.cli.app`, never this one, and defines its group or
command on its own; `main` imports it only when that command runs (or its help is asked
for): `COMMANDS` names each one's module and the first paragraph of its help, which
`gateway --help` lists without importing any. The heavier parts (the pipeline, the doors,
sending) are imported inside the commands that use them, so that `ingest` behind an MTA's
pipe starts quickly.
"""
from __future__ import annotations

import importlib
from typing import Any, cast

import click
from sqlalchemy.exc import DBAPIError

from gateway import logs
from gateway.cli import ingest
from gateway.cli.app import App, database_trouble

__all__ = ["App", "COMMANDS", "main"]

# name: ("module:attribute" in gateway.cli, the first paragraph of the command's help);
# tests/test_cli_commands.py checks that each help is the command's own.
COMMANDS: dict[str, tuple[str, str]] = {
    "attachments": ("attachments:attachments", "Files kept on cases, including those too big to travel by mail."),
    "cases": ("cases:cases", "Support cases."),
    "contacts": ("refdata:contacts", "Client contacts."),
    "contracts": ("refdata:contracts", "Maintenance contracts and priority points."),
    "db": ("database:db", "Database schema."),
    "import": ("refdata:import_", "Import reference data (clients, contracts, licences, contacts, agents) from TOML."),
    "inbound": ("inbound:inbound", "Received messages and what became of them."),
    "ingest": ("ingest:ingest", "Store messages (standard input, files, folders or Maildirs), then process them."),
    "jobs": ("jobs:jobs", "Scheduled work: serve runs it; these commands run it by hand."),
    "licences": ("refdata:licences", "Licences and their status."),
    "outbox": ("outbox:outbox", "Outgoing mail."),
    "serve": ("serve:serve", "Run the doors, the pipeline, the outbox sender, the scheduler, and the health and "
                             "metrics endpoint when enabled, until stopped."),
    "status": ("status:status", "Queue depths, held messages, failing deliveries, last errors, jobs, the IMAP door."),
}


class Gateway(click.Group):
    """The `gateway` group: a database error inside any command ends it with one line
    naming the file or server and what to do (cli/trouble.py), never a traceback. Its
    commands are imported when used (`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[cmd_name][0].partition(":")
        return cast(click.Command, getattr(importlib.import_module(f"gateway.cli.{module}"), attribute))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of `--help`, shortened as click would, from `COMMANDS` alone."""
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        with formatter.section("Commands"):
            formatter.write_dl([(name, click.Command(name, help=text).get_short_help_str(limit))
                                for name, (_, text) in sorted(COMMANDS.items())])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DBAPIError as exc:
            raise database_trouble(ctx.find_object(App).settings, exc) from exc  # type: ignore[union-attr]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if "ingest" in args:
                raise ingest.for_the_mta(exc) from None
            raise


@click.group(cls=Gateway)
# A plain string: a file that cannot be read is the command's failure (75 for `ingest`),
# not a usage error that an MTA would take as a reason to bounce the message.
@click.option("--config", "config_path", envvar="GATEWAY_CONFIG", metavar="FILE",
              help="Configuration file (default: config/gateway.toml).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Email-driven support-case gateway."""
    logs.setup(verbose)
    ctx.obj = App(config_path)
    ctx.call_on_close(ctx.obj.close)
