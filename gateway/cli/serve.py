"""`gateway serve`: run the gateway until SIGINT or SIGTERM."""
from __future__ import annotations

import functools
import logging
import signal
import threading
from types import FrameType

import click

from gateway import logs
from gateway.cli.app import App, pass_app
from gateway.config import Settings

log = logging.getLogger(__name__)


@click.command("serve")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one readable line per event; json: one JSON object per line (journald, log shippers).")
@pass_app
def serve(app: App, log_format: str) -> None:
    """Run the doors, the pipeline, the outbox sender, the scheduler, and the health and
    metrics endpoint when enabled, until stopped."""
    from gateway.serve import Gateway
    settings = app.settings  # the log file, when set, is opened here: the format applies to it
    if log_format == "json":
        logs.as_json()
    app.upgrade_apart = True
    gateway = Gateway(settings, app.engine)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, functools.partial(_set, stop))
    gateway.start()
    said = started(settings, gateway.endpoint.address if gateway.endpoint else None)
    if log_format == "json":
        log.info("%s", said)
    else:
        click.echo(said)
    stop.wait()
    gateway.stop()
    log.info("gateway stopped")


def started(s: Settings, health: tuple[str, int] | None) -> str:
    """What runs, as one line: only the doors that are open, where mail goes, the endpoint."""
    if s.smtp.enabled:
        line = f"gateway listening on {s.smtp.host}:{s.smtp.port} ({'LMTP' if s.smtp.lmtp else 'SMTP'})"
    else:
        line = "gateway running with no SMTP door ([smtp] enabled = false)"
    line += f" for {s.support.address}"
    if s.imap.enabled:
        line += f"; reading IMAP {s.imap.host}:{s.imap.port}"
    line += f"; outbound via {s.outbound.transport}"
    if s.outbound.transport == "maildir":
        line += f" to {s.path(s.outbound.maildir).resolve()}"
    else:
        line += f" to {s.outbound.host}:{s.outbound.port}"
    if not s.jobs.enabled:
        line += "; scheduled jobs off"
    if health is not None:
        host = f"[{health[0]}]" if ":" in health[0] else health[0]
        line += f"; health and metrics on http://{host}:{health[1]}/healthz and /metrics"
    return line


def _set(stop: threading.Event, _signum: int, _frame: FrameType | None) -> None:
    """A signal handler: the main thread, waiting on `stop`, then stops the gateway."""
    stop.set()
