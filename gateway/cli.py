"""The `gateway` command: wiring only; every command calls into the package."""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from gateway import cli_refdata, config, logs, schema, views
from gateway.db import make_engine, session_scope
from gateway.models import DELIVERY_FAILED, DELIVERY_PENDING, Delivery, Disposition, InboundMessage

log = logging.getLogger(__name__)


class App:
    """What every command shares: the settings and the engine, opened on first use."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: config.Settings | None = None
        self._engine = None

    @property
    def settings(self) -> config.Settings:
        if self._settings is None:
            try:
                self._settings = config.load(self.config_path)
            except config.ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
            if self._settings.log.file:
                logs.to_file(self._settings.path(self._settings.log.file))
        return self._settings

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        if self._engine is None:
            self._engine = make_engine(self.settings)
            schema.upgrade(self._engine)
        return self._engine

    def close(self) -> None:
        """Release the database connections and the log file when the command ends; never
        raises, since the command's outcome is decided by then."""
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.dispose()
            except Exception:  # noqa: BLE001
                log.warning("could not close the database connections", exc_info=True)
        logs.close()


pass_app = click.make_pass_decorator(App)


def _print(data: Any, as_json: bool, columns: list[str] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        if columns:
            click.echo("  ".join(str(row.get(c, "")) if row.get(c) is not None else "-" for c in columns))
        else:
            for key, value in row.items():
                click.echo(f"{key}: {value}")


@click.group()
# A plain string: a file that cannot be read is the command's failure (75 for `ingest`),
# not a usage error that an MTA would take as a reason to bounce the message.
@click.option("--config", "config_path", envvar="GATEWAY_CONFIG", metavar="FILE",
              help="Configuration file (default: config/gateway.toml).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Email-driven support-case gateway."""
    logs.setup(verbose)
    ctx.obj = App(config_path)
    ctx.call_on_close(ctx.obj.close)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Create or upgrade the schema to the newest version."""
    app.engine  # noqa: B018 - opening the engine upgrades the schema, and `close` disposes it
    click.echo("database is up to date")


@main.command("import")
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


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--sender", metavar="ADDR",
              help='Envelope sender of the message on standard input ("" or MAILER-DAEMON: the null sender).')
@click.option("--recipient", "recipients", metavar="ADDR", multiple=True,
              help="Envelope recipient of the message on standard input (repeatable).")
@pass_app
def ingest(app: App, paths: tuple[str, ...], sender: str | None, recipients: tuple[str, ...]) -> None:
    """Store messages (standard input, files, folders or Maildirs), then process them.

    Exit status speaks of storing only: 0 once every message is stored, 75 when one could
    not be stored, whatever else happens (an MTA then retries). Standard error gets one
    line at most; reading standard input, the log goes to `[log] file`, syslog or nowhere.
    """
    from gateway.receive import pipe, pipe_exit
    if paths and (sender is not None or recipients):
        raise click.UsageError("--sender and --recipient describe the message on standard input, not files")
    envelope = pipe.Envelope.given(sender, recipients)
    if not paths:
        logs.for_pipe()
    pipe_exit.leave(pipe_exit.run(lambda delivery: pipe.ingest(
        lambda: (app.settings, app.engine), list(paths), delivery, envelope)))


@main.command()
@pass_app
def serve(app: App) -> None:
    """Run the doors, the pipeline, the outbox sender and the scheduler until stopped."""
    from gateway.serve import Gateway
    gateway = Gateway(app.settings, app.engine)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    gateway.start()
    s = app.settings
    click.echo(f"gateway listening on {s.smtp.host}:{s.smtp.port} ({'LMTP' if s.smtp.lmtp else 'SMTP'})"
               f" for {s.support.address}; outbound via {s.outbound.transport}"
               + (f" to {s.path(s.outbound.maildir).resolve()}" if s.outbound.transport == "maildir" else ""))
    stop.wait()
    gateway.stop()


@main.group()
def cases() -> None:
    """Support cases."""


@cases.command("list")
@click.option("--status")
@click.option("--client")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def cases_list(app: App, status: str | None, client: str | None, as_json: bool) -> None:
    with session_scope(app.engine) as session:
        rows = views.cases_list(session, status, client)
    _print(rows, as_json, ["number", "status", "client", "serial", "criticality", "priority", "title"])


@cases.command("show")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def cases_show(app: App, number: int, as_json: bool) -> None:
    with session_scope(app.engine) as session:
        detail = views.case_detail(session, number)
    if detail is None:
        raise click.ClickException(f"no case {number}")
    if as_json:
        _print(detail, True)
        return
    for key in ("number", "status", "client", "serial", "module", "criticality", "priority", "title",
                "main_contact", "distribution_list"):
        click.echo(f"{key}: {detail[key]}")
    for e in detail["events"]:
        click.echo(f"\n--- {e['at']} {e['kind']}{' (internal)' if e['internal'] else ''} by {e['author']}")
        if e["text"]:
            click.echo(e["text"])
    for a in detail["attachments"]:
        click.echo(f"attachment: {a['filename']} ({a['size']} bytes)")


@main.group()
def inbound() -> None:
    """Received messages and what became of them."""


@inbound.command("list")
@click.option("--held", is_flag=True, help="Only messages held for a human.")
@click.option("--limit", type=int, help="Only the newest N messages.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def inbound_list(app: App, held: bool, limit: int | None, as_json: bool) -> None:
    with session_scope(app.engine) as session:
        rows = views.inbound_list(session, held, limit)
    _print(rows, as_json, ["id", "received_at", "outcome", "case", "sender", "subject"])


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


@main.group()
def outbox() -> None:
    """Outgoing mail."""


@outbox.command("list")
@click.option("--failed", is_flag=True, help="Only deliveries set aside after failing.")
@click.option("--limit", type=int, help="Only the newest N deliveries.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def outbox_list(app: App, failed: bool, limit: int | None, as_json: bool) -> None:
    with session_scope(app.engine) as session:
        rows = views.outbox_list(session, failed, limit)
    _print(rows, as_json, ["id", "status", "attempts", "recipient", "kind", "subject", "last_error"])


@outbox.command("retry")
@click.argument("delivery_id", type=int)
@pass_app
def outbox_retry(app: App, delivery_id: int) -> None:
    """Put a failed delivery back in the queue, due now."""
    from gateway.db import utcnow
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
    """Send every due delivery now, once (serve does this continuously)."""
    from gateway.outbound import send
    counts = send.drain(app.engine, app.settings)
    click.echo(", ".join(f"{k}: {v}" for k, v in counts.items()) or "nothing to send")


@main.group()
def jobs() -> None:
    """Scheduled work: serve runs it; these commands run it by hand."""


def _clock(value: str | None) -> Any:
    """--now as naive UTC; an ISO-8601 time without an offset is taken as UTC. A time out
    of the jobs' reach (jobs/clock.py) is refused as a bad parameter, never run."""
    import datetime as dt

    from gateway.db import utcnow
    from gateway.jobs.clock import out_of_reach
    now = utcnow()
    if value is None:
        return now
    try:
        moment = dt.datetime.fromisoformat(value)
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
    except (ValueError, OverflowError) as exc:  # OverflowError: an offset past year 1 or 9999
        raise click.BadParameter(f"not an ISO-8601 time the jobs can use: {value!r}", param_hint="--now") from exc
    if (problem := out_of_reach(moment, now)) is not None:
        raise click.BadParameter(problem, param_hint="--now")
    return moment


@jobs.command("run")
@click.argument("name", type=click.Choice(("reminders", "autoclose", "escalation", "adv-digest",
                                           "licence-expiry", "all")))
@click.option("--now", "now", metavar="ISO-8601",
              help="The job's clock: what is due then is done now (default: now; UTC without an offset).")
@pass_app
def jobs_run(app: App, name: str, now: str | None) -> None:
    """Run one job, or all, once; exits 1 when something was left undone by an error."""
    from gateway.jobs import runner
    clock = _clock(now)
    runs = (runner.run_all(app.settings, app.engine, clock) if name == "all"
            else [runner.run(name, app.settings, app.engine, clock)])
    for result in runs:
        click.echo(result.summary())
    if any(result.errors for result in runs):
        sys.exit(1)


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def jobs_list(app: App, as_json: bool) -> None:
    """Each job: its last run and what it did, its next run, and what is due right now."""
    from gateway.jobs import NAMES, record, runner
    clock = _clock(None)
    with session_scope(app.engine) as session:
        rows = [{"job": name, **record.read(session, name),
                 "due_now": runner.forecast(name, app.settings, session, clock)} for name in NAMES]
    if not as_json:
        for row in rows:
            for key in ("did", "expected", "due_now"):
                row[key] = ", ".join(f"{k}: {v}" for k, v in (row.get(key) or {}).items()) or None
    _print(rows, as_json, ["job", "last_run", "outcome", "did", "next_run", "due_now"])


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def status(app: App, as_json: bool) -> None:
    """Queue depths, held messages, failing deliveries, last errors, jobs, the IMAP door."""
    with session_scope(app.engine) as session:
        data = views.status(session)
        if app.settings.imap.enabled:
            from gateway.receive import imap
            data["imap"] = imap.status(session)
        _print(data, as_json)


@main.group()
def attachments() -> None:
    """Files kept on cases, including those too big to travel by mail."""


@attachments.command("list")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def attachments_list(app: App, number: int, as_json: bool) -> None:
    """The files of case NUMBER: id, name, size, type and the message that brought each."""
    with session_scope(app.engine) as session:
        rows = views.attachments_list(session, number)
    if rows is None:
        raise click.ClickException(f"no case {number}")
    if not rows and not as_json:
        click.echo(f"case {number} has no files")
        return
    _print(rows, as_json, ["id", "size", "content_type", "event", "author", "filename"])


@attachments.command("get")
@click.argument("number", type=int)
@click.argument("file_id", type=int)
@click.option("--output", "-o", type=click.Path(dir_okay=True, allow_dash=True),
              help="Where to write it: a file, a folder, or - for standard output "
                   "(default: the file's own name in the current folder).")
@pass_app
def attachments_get(app: App, number: int, file_id: int, output: str | None) -> None:
    """Write file FILE_ID of case NUMBER, byte for byte; never overwrites a file."""
    with session_scope(app.engine) as session:
        found = views.attachment_data(session, number, file_id)
    if found is None:
        raise click.ClickException(f"case {number} has no file {file_id} (see: gateway attachments list {number})")
    filename, data = found
    if output == "-":
        click.get_binary_stream("stdout").write(data)
        return
    target = Path(output or ".")
    if target.is_dir():
        target = target / (filename or f"file-{file_id}")
    try:
        with open(target, "xb") as out:
            out.write(data)
    except FileExistsError as exc:
        raise click.ClickException(f"{target} exists; choose another --output") from exc
    click.echo(f"{target} ({len(data)} bytes)")


cli_refdata.register(main, pass_app, _print)


if __name__ == "__main__":  # pragma: no cover
    main()
