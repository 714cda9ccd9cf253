"""The `gateway` command (entry point `gateway.cli:main`): the `main` group and the command
groups it gathers, one module each. Wiring only: every command calls into the package.

A command module imports `gateway.cli.app`, never this one, and defines its group or
command on its own; this module adds them to `main`. The heavier parts (the pipeline, the
doors, sending) are imported inside the commands that use them, so that `ingest` behind an
MTA's pipe starts quickly.
"""
from __future__ import annotations

import click

from gateway import logs
from gateway.cli import attachments, cases, database, inbound, ingest, jobs, outbox, refdata, serve, status
from gateway.cli.app import App

__all__ = ["App", "main"]


@click.group()
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
