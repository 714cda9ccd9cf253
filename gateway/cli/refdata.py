"""Reference data: `gateway import` loads it from TOML; `contacts`, `licences` and
`contracts` show it, and `contracts credit` adds or withdraws priority points."""
from __future__ import annotations

from pathlib import Path

import click

from gateway import accounts
from gateway.cli import table
from gateway.cli.app import App, pass_app, print_rows
from gateway.db import session_scope, utcnow


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@pass_app
def import_(app: App, file: str) -> None:
    """Import reference data (clients, contracts, licences, contacts, agents) from TOML."""
    from gateway import refdata
    try:
        data = refdata.load_file(Path(file).read_text(encoding="utf-8"))
        with session_scope(app.engine) as session:
            report = refdata.import_data(session, data)
    except refdata.RefDataError as exc:
        for error in exc.errors:
            click.echo(f"error: {error}", err=True)
        raise click.ClickException(f"nothing imported: {len(exc.errors)} error(s)") from exc
    click.echo(report.summary())


@click.group("contacts")
def contacts() -> None:
    """Client contacts."""


@contacts.command("list")
@click.option("--client")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def contacts_list(app: App, client: str | None, as_json: bool) -> None:
    """Contacts by client and address, only those of one client when given."""
    with session_scope(app.engine) as session:
        rows = accounts.contacts_list(session, client)
    print_rows(rows, as_json, ["client", "status", "email", "name", "phone", "failing_since"])


@contacts.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def contacts_show(app: App, email: str, as_json: bool) -> None:
    """Every contact with address EMAIL (one per client)."""
    with session_scope(app.engine) as session:
        rows = accounts.contact_show(session, email)
    if not rows:
        raise click.ClickException(f"no contact {email}")
    print_rows(rows, as_json)


@click.group("licences")
def licences() -> None:
    """Licences and their status."""


@licences.command("list")
@click.option("--client")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def licences_list(app: App, client: str | None, as_json: bool) -> None:
    """Licences by client and serial, only those of one client when given."""
    with session_scope(app.engine) as session:
        rows = accounts.licences_list(session, client)
    print_rows(rows, as_json, ["serial", "client", "status", "ends_on", "product"])


@click.group("contracts")
def contracts() -> None:
    """Maintenance contracts and priority points."""


@contracts.command("show")
@click.argument("client")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def contracts_show(app: App, client: str, as_json: bool) -> None:
    """The contract of CLIENT: its level, its points and their ledger."""
    try:
        with session_scope(app.engine) as session:
            data = accounts.contract_show(session, client)
    except accounts.UnknownClient as exc:
        raise click.ClickException(f"no client {exc}") from exc
    if as_json:
        print_rows(data, True)
        return
    click.echo(f"{data['client']} {data['name']}: {data['level'] or 'no contract'}, {data['points']} point(s)")
    ledger = [{**e, "delta": f"{e['delta']:+d}"} for e in data["ledger"]]
    table.echo(table.table(ledger, ["at", "delta", "balance", "case", "reason"], indent="  "))


class SignedPoints(click.Command):
    """Takes `-2` as a number of points, written before or after `--`: both
    `credit C10042 -2 --reason x` and `credit C10042 -- -2 --reason x` withdraw two."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            if at + 1 < len(args) and args[at + 1].lstrip("-").isdigit():
                args = args[:at] + args[at + 1:]
        return super().parse_args(ctx, args)


@contracts.command("credit", cls=SignedPoints, context_settings={"ignore_unknown_options": True})
@click.argument("client")
@click.argument("points", type=int)
@click.option("--reason", required=True, help="Why (kept in the ledger).")
@pass_app
def contracts_credit(app: App, client: str, points: int, reason: str) -> None:
    """Add POINTS to CLIENT's contract, or withdraw them when negative.

    The balance never goes below zero; the reason is kept in the ledger.
    """
    try:
        with session_scope(app.engine) as session:
            balance = accounts.credit(session, client, points, reason, utcnow())
    except accounts.UnknownClient as exc:
        raise click.ClickException(f"no client {exc}") from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{client}: {balance} point(s)")
