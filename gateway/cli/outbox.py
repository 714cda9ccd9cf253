"""`gateway outbox`: outgoing mail, listed, put back in the queue, or sent by hand."""
from __future__ import annotations

import click

from gateway import views
from gateway.cli.app import App, pass_app, print_rows
from gateway.db import session_scope, utcnow
from gateway.models import DELIVERY_FAILED, DELIVERY_PENDING, Delivery


@click.group("outbox")
def outbox() -> None:
    """Outgoing mail."""


@outbox.command("list")
@click.option("--failed", is_flag=True, help="Only deliveries set aside after failing.")
@click.option("--limit", type=int, help="Only the newest N deliveries.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def outbox_list(app: App, failed: bool, limit: int | None, as_json: bool) -> None:
    """Deliveries, oldest first, with their status, attempts and last error."""
    with session_scope(app.engine) as session:
        rows = views.outbox_list(session, failed, limit)
    print_rows(rows, as_json, ["id", "status", "attempts", "recipient", "kind", "subject", "last_error"])


@outbox.command("retry")
@click.argument("delivery_id", type=int)
@pass_app
def outbox_retry(app: App, delivery_id: int) -> None:
    """Put a failed delivery back in the queue, due now."""
    with session_scope(app.engine) as session:
        row = session.get(Delivery, delivery_id)
        if row is None:
            raise click.ClickException(f"no delivery {delivery_id}")
        if row.status != DELIVERY_FAILED:
            raise click.ClickException(f"delivery {delivery_id} is {row.status}, not failed")
        row.status, row.next_attempt_at, row.locked_until = DELIVERY_PENDING, utcnow(), None
    click.echo(f"delivery {delivery_id} queued again")


@outbox.command("send")
@pass_app
def outbox_send(app: App) -> None:
    """Send every due delivery now, once (serve does this continuously); exits 1 when one
    could not be sent (due again later, or set aside as failed)."""
    from gateway.outbound import send
    counts = send.drain(app.engine, app.settings)
    click.echo(", ".join(f"{k}: {v}" for k, v in counts.items()) or "nothing to send")
    unsent = counts.get(DELIVERY_PENDING, 0) + counts.get(DELIVERY_FAILED, 0)
    if unsent:
        raise click.ClickException(f"{unsent} deliver{'y' if unsent == 1 else 'ies'} not sent: "
                                   "see gateway outbox list (last_error)")
