"""Operator commands on reference data: `contacts`, `licences`, `contracts` (wiring only)."""
from __future__ import annotations

import click

from gateway import accounts
from gateway.db import session_scope, utcnow


def register(main: click.Group, pass_app, print_rows) -> None:  # type: ignore[no-untyped-def]
    """Add the reference-data command groups to the `gateway` command."""

    @main.group()
    def contacts() -> None:
        """Client contacts."""

    @contacts.command("list")
    @click.option("--client")
    @click.option("--json", "as_json", is_flag=True)
    @pass_app
    def contacts_list(app, client: str | None, as_json: bool) -> None:  # type: ignore[no-untyped-def]
        with session_scope(app.engine) as session:
            rows = accounts.contacts_list(session, client)
        print_rows(rows, as_json, ["client", "status", "email", "name", "phone", "failing_since"])

    @contacts.command("show")
    @click.argument("email")
    @click.option("--json", "as_json", is_flag=True)
    @pass_app
    def contacts_show(app, email: str, as_json: bool) -> None:  # type: ignore[no-untyped-def]
        with session_scope(app.engine) as session:
            rows = accounts.contact_show(session, email)
        if not rows:
            raise click.ClickException(f"no contact {email}")
        print_rows(rows, as_json)

    @main.group()
    def licences() -> None:
        """Licences and their status."""

    @licences.command("list")
    @click.option("--client")
    @click.option("--json", "as_json", is_flag=True)
    @pass_app
    def licences_list(app, client: str | None, as_json: bool) -> None:  # type: ignore[no-untyped-def]
        with session_scope(app.engine) as session:
            rows = accounts.licences_list(session, client)
        print_rows(rows, as_json, ["serial", "client", "status", "ends_on", "product"])

    @main.group()
    def contracts() -> None:
        """Maintenance contracts and priority points."""

    @contracts.command("show")
    @click.argument("client")
    @click.option("--json", "as_json", is_flag=True)
    @pass_app
    def contracts_show(app, client: str, as_json: bool) -> None:  # type: ignore[no-untyped-def]
        try:
            with session_scope(app.engine) as session:
                data = accounts.contract_show(session, client)
        except accounts.UnknownClient as exc:
            raise click.ClickException(f"no client {exc}") from exc
        if as_json:
            print_rows(data, True)
            return
        click.echo(f"{data['client']} {data['name']}: {data['level']}, {data['points']} point(s)")
        for e in data["ledger"]:
            click.echo(f"  {e['at']}  {e['delta']:+d}  = {e['balance']}  {e['reason']}")

    @contracts.command("credit")
    @click.argument("client")
    @click.argument("points", type=int)
    @click.option("--reason", required=True, help="Why (kept in the ledger).")
    @pass_app
    def contracts_credit(app, client: str, points: int, reason: str) -> None:  # type: ignore[no-untyped-def]
        try:
            with session_scope(app.engine) as session:
                balance = accounts.credit(session, client, points, reason, utcnow())
        except accounts.UnknownClient as exc:
            raise click.ClickException(f"no client {exc}") from exc
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"{client}: {balance} point(s)")
