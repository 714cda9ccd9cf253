"""`gateway status`: what an operator checks first."""
from __future__ import annotations

from typing import Any

import click

from gateway import views
from gateway.cli import table
from gateway.cli.app import App, pass_app, print_rows
from gateway.db import session_scope

COUNTS = ("open_cases", "inbound_pending", "inbound_held", "outbox_pending", "outbox_retrying", "outbox_failed",
          "outbox_held_back", "failing_contacts")


@click.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def status(app: App, as_json: bool) -> None:
    """Queue depths, held messages, failing deliveries, last errors, jobs, the IMAP door."""
    with session_scope(app.engine) as session:
        data = views.status(session)
        if app.settings.imap.enabled:
            from gateway.receive import imap
            data["imap"] = imap.status(session)
    if as_json:
        print_rows(data, True)
        return
    table.echo(_text(data))


def _text(data: dict[str, Any]) -> list[str]:
    """The status as the operator reads it: the counts, then a table per list."""
    jobs = [{"job": name, **record} for name, record in data["jobs"].items()]
    lines = table.fields(data, COUNTS)
    lines += ["", "last held messages", *table.table(data["last_held"], ["id", "reasons"], "  ")]
    lines += ["", "last delivery errors",
              *table.table(data["last_delivery_errors"], ["id", "recipient", "error"], "  ")]
    lines += ["", "jobs", *table.table(jobs, ["job", "last_run", "outcome", "did", "next_run"], "  ")]
    if "imap" in data:
        lines += ["", "imap door", *("  " + line for line in table.fields(data["imap"]))]
    return lines
