"""The `gateway` command (entry point `gateway.cli:main`): the `main` group and the command
groups it gathers, one module each. Wiring only: every command calls into the package.

A command module imports `gateway.cli.app`, never this one, and defines its group or
command on its own; this module adds them to `main`. The heavier parts (the pipeline, the
doors, sending) are imported inside the commands that use them, so that `ingest` behind an
MTA's pipe starts quickly.
"""
from __future__ import annotations

from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from gateway import logs
from gateway.cli import attachments, cases, database, inbound, ingest, jobs, outbox, refdata, serve, status
from gateway.cli.app import App, database_trouble

__all__ = ["App", "main"]


class Gateway(click.Group):
    """The `gateway` group: a database error inside any command ends it with one line
    naming the file or server and what to do (cli/trouble.py), never a traceback."""

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


for _command in (database.db, refdata.import_, ingest.ingest, serve.serve, cases.cases,
                 inbound.inbound, outbox.outbox, jobs.jobs, status.status, attachments.attachments,
                 refdata.contacts, refdata.licences, refdata.contracts):
    main.add_command(_command)
