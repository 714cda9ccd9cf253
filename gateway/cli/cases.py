"""`gateway cases`: support cases, listed and shown."""
from __future__ import annotations

from typing import Any

import click

from gateway import timeline, views
from gateway.cli import table
from gateway.cli.app import App, pass_app, print_rows
from gateway.db import session_scope
from gateway.models import Status

# The fields `cases show` prints before the timeline, in this order.
SHOWN = ("number", "status", "client", "serial", "module", "criticality", "priority", "title",
         "main_contact", "distribution_list")


@click.group("cases")
def cases() -> None:
    """Support cases."""


@cases.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only cases of this status.")
@click.option("--client")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def cases_list(app: App, status: str | None, client: str | None, as_json: bool) -> None:
    """Cases in number order, only those of one status or client when given."""
    with session_scope(app.engine) as session:
        rows = views.cases_list(session, status, client)
    print_rows(rows, as_json, ["number", "status", "client", "serial", "criticality", "priority", "title"])


@cases.command("show")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def cases_show(app: App, number: int, as_json: bool) -> None:
    """Case NUMBER: its fields, its timeline and its files."""
    with session_scope(app.engine) as session:
        detail = views.case_detail(session, number)
    if detail is None:
        raise click.ClickException(f"no case {number}")
    if as_json:
        print_rows(detail, True)
        return
    _echo_detail(detail)


def _echo_detail(detail: dict[str, Any]) -> None:
    """Write a case as text: its fields, then each event, then a table of its files."""
    table.echo(table.fields(detail, SHOWN))
    for e in detail["events"]:
        click.echo(f"\n--- {table.text(e['at'])}  {e['kind']}{' (internal)' if e['internal'] else ''}"
                   f"  by {table.text(e['author'])}")
        text = timeline.plain(e["kind"], e["text"] or "", e["author"] or "")
        if text:
            click.echo(text)
    click.echo("\nfiles")
    table.echo(table.table(detail["attachments"], ["filename", "size"], indent="  "))
