"""`gateway ingest`: store messages from standard input (an MTA's pipe), files, folders or
Maildirs, then process them. Its exit status speaks of storing only (receive/pipe_exit.py).
"""
from __future__ import annotations

import functools

import click

from gateway import logs
from gateway.cli.app import App, pass_app


@click.command("ingest")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--sender", metavar="ADDR",
              help='Envelope sender of the message on standard input ("" or MAILER-DAEMON: the null sender).')
@click.option("--recipient", "recipients", metavar="ADDR", multiple=True,
              help="Envelope recipient of the message on standard input (repeatable).")
@pass_app
def ingest(app: App, paths: tuple[str, ...], sender: str | None, recipients: tuple[str, ...]) -> None:
    """Store messages (standard input, files, folders or Maildirs), then process them.

    Exit status speaks of storing only: 0 once every message is stored, 75 when one could
    not be stored, whatever else happens (an MTA then retries). Standard error gets one
    line at most; reading standard input, the log goes to `[log] file`, syslog or nowhere.
    """
    # Imported here: the other commands need neither, and a pipe delivery starts faster.
    from gateway.receive import pipe, pipe_exit
    if paths and (sender is not None or recipients):
        raise click.UsageError("--sender and --recipient describe the message on standard input, not files")
    envelope = pipe.Envelope.given(sender, recipients)
    if not paths:
        logs.for_pipe()
    # `app.connect` opens the settings and the engine inside the guarded work, so that a
    # configuration or database that fails becomes a 75 like any other failure to store.
    pipe_exit.leave(pipe_exit.run(functools.partial(pipe.ingest, app.connect, list(paths), envelope=envelope)))
