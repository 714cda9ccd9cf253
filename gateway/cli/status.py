"""`gateway status`: what an operator checks first."""
from __future__ import annotations

import click

from gateway import views
from gateway.cli.app import App, pass_app, print_rows
from gateway.db import session_scope


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
        print_rows(data, as_json)
