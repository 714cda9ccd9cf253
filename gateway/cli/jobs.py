"""`gateway jobs`: the scheduled work, run by hand (with `--now`, as if at another time)
and listed with its last and next runs."""
from __future__ import annotations

import datetime as dt
import sys

import click

from gateway.cli.app import App, pass_app, print_rows
from gateway.db import session_scope, utcnow


@click.group("jobs")
def jobs() -> None:
    """Scheduled work: serve runs it; these commands run it by hand."""


@jobs.command("run")
@click.argument("name", type=click.Choice(("reminders", "autoclose", "escalation", "adv-digest",
                                           "licence-expiry", "expiry-notice", "all")))
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
    print_rows(rows, as_json, ["job", "last_run", "outcome", "did", "next_run", "due_now"])


def _clock(value: str | None) -> dt.datetime:
    """--now as naive UTC; an ISO-8601 time without an offset is taken as UTC. A time out
    of the jobs' reach (jobs/clock.py) is refused as a bad parameter, never run."""
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
