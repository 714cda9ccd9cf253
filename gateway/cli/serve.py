"""`gateway serve`: run the gateway until SIGINT or SIGTERM."""
from __future__ import annotations

import functools
import signal
import threading
from types import FrameType

import click

from gateway.cli.app import App, pass_app


@click.command("serve")
@pass_app
def serve(app: App) -> None:
    """Run the doors, the pipeline, the outbox sender and the scheduler until stopped."""
    from gateway.serve import Gateway
    gateway = Gateway(app.settings, app.engine)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, functools.partial(_set, stop))
    gateway.start()
    s = app.settings
    click.echo(f"gateway listening on {s.smtp.host}:{s.smtp.port} ({'LMTP' if s.smtp.lmtp else 'SMTP'})"
               f" for {s.support.address}; outbound via {s.outbound.transport}"
               + (f" to {s.path(s.outbound.maildir).resolve()}" if s.outbound.transport == "maildir" else ""))
    stop.wait()
    gateway.stop()


def _set(stop: threading.Event, _signum: int, _frame: FrameType | None) -> None:
    """A signal handler: the main thread, waiting on `stop`, then stops the gateway."""
    stop.set()
