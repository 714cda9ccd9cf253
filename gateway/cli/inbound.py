"""`gateway inbound`: received messages, what became of them, and a second try for those
held for a human."""
from __future__ import annotations

import click

from gateway import views
from gateway.cli.app import App, pass_app, print_rows
from gateway.db import session_scope
from gateway.models import Disposition, InboundMessage


@click.group("inbound")
def inbound() -> None:
    """Received messages and what became of them."""


@inbound.command("list")
@click.option("--held", is_flag=True, help="Only messages held for a human.")
@click.option("--limit", type=int, help="Only the newest N messages.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def inbound_list(app: App, held: bool, limit: int | None, as_json: bool) -> None:
    """Received messages, oldest first, with their outcome and case."""
    with session_scope(app.engine) as session:
        rows = views.inbound_list(session, held, limit)
    print_rows(rows, as_json, ["id", "received_at", "outcome", "case", "sender", "subject"])


@inbound.command("retry")
@click.argument("inbound_id", type=int)
@pass_app
def inbound_retry(app: App, inbound_id: int) -> None:
    """Run a held message through the pipeline again."""
    from gateway.pipeline import run
    with session_scope(app.engine) as session:
        row = session.get(InboundMessage, inbound_id)
        if row is None:
            raise click.ClickException(f"no message {inbound_id}")
        if row.outcome != Disposition.HELD:
            raise click.ClickException(f"message {inbound_id} is {row.outcome}, not held")
    outcome = run.process(app.engine, app.settings, inbound_id, retry=True)
    if outcome is None:
        raise click.ClickException(f"message {inbound_id} was processed meanwhile")
    click.echo(f"message {inbound_id}: {outcome.outcome} ({'; '.join(outcome.reasons)})")
