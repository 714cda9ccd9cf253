"""`gateway ingest`: store messages from standard input (an MTA's pipe), files, folders or
Maildirs, then process them. Its exit status speaks of storing only (receive/pipe_exit.py).
"""
from __future__ import annotations

import functools
import sys
from typing import IO, TYPE_CHECKING, Any

import click

from gateway import logs
from gateway.cli.app import App, pass_app

if TYPE_CHECKING:  # imported by the command itself, when it runs
    from gateway.pipeline.ahead import Reader


class PipedUsageError(click.UsageError):
    """A usage error of `ingest` under an MTA: 75, so that the MTA keeps the message
    queued while the operator fixes the command line (2 would bounce it)."""
    exit_code = 75  # pipe_exit.EX_TEMPFAIL

    def show(self, file: IO[Any] | None = None) -> None:
        """One line, as for any failure of `ingest` under an MTA."""
        click.echo(f"gateway: usage error, {self.format_message()} (see gateway ingest --help); "
                   "the MTA will retry", err=True)


def for_the_mta(exc: click.UsageError) -> click.UsageError:
    """`exc`, or the same error exiting 75 when standard input is not a terminal."""
    try:
        piped = not sys.stdin.isatty()
    except (AttributeError, ValueError):  # no standard input at all, or a closed one
        piped = True
    return PipedUsageError(exc.message, exc.ctx) if piped else exc


class Ingest(click.Command):
    """`ingest`'s usage errors exit 75 under an MTA (see for_the_mta)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise for_the_mta(exc) from None


@click.command("ingest", cls=Ingest)
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--sender", metavar="ADDR",
              help='Envelope sender of the message on standard input ("" or MAILER-DAEMON: the null sender).')
@click.option("--recipient", "recipients", metavar="ADDR", multiple=True,
              help="Envelope recipient of the message on standard input (repeatable).")
@pass_app
def ingest(app: App, paths: tuple[str, ...], sender: str | None, recipients: tuple[str, ...]) -> None:
    """Store messages (standard input, files, folders or Maildirs), then process them.

    Exit status speaks of storing only: 0 once every message is stored, 75 when one could
    not be stored, whatever else happens (an MTA then retries), and 75 for a usage error
    too when standard input is not a terminal. Standard error gets one
    line at most; reading standard input, the log goes to `[log] file`, syslog or nowhere.
    """
    if paths and (sender is not None or recipients):
        raise for_the_mta(click.UsageError("--sender and --recipient describe the message on standard input, "
                                           "not files"))
    # A backlog's files are read and parsed beside from now on, while the rest loads (`ahead`).
    reader = _early_reader(list(paths))
    # Imported here: the other commands need neither, and a pipe delivery starts faster.
    from gateway.receive import pipe, pipe_exit
    envelope = pipe.Envelope.given(sender, recipients)
    if not paths:
        logs.for_pipe()
    # `app.connect` opens the settings and the engine inside the guarded work, so that a
    # configuration or database that fails becomes a 75 like any other failure to store.
    status = pipe_exit.run(functools.partial(pipe.ingest, app.connect, list(paths), envelope=envelope,
                                             reader=reader))
    app.close()  # before `leave` may end the process: SQLite's last connection writes its log back
    pipe_exit.leave(status)


def _early_reader(paths: list[str]) -> Reader | None:
    """A started `ahead.Reader` of the files of `paths`; None for standard input, or when
    they cannot be listed (`pipe.ingest` lists them again, and its failure is the delivery's)."""
    if not paths:
        return None
    from gateway.pipeline import ahead
    from gateway.receive import files
    try:
        reader = ahead.Reader(files.message_files(paths))
    except OSError:
        return None
    reader.start()
    return reader
