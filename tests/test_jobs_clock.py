"""The jobs' explicit clock (`gateway jobs run --now`): it decides what is due; what it sends
is due at once and dated with the real time, and so are the changes to the case; the job's
own records carry its clock, so the same run twice does the work once. A clock out of
reach is refused with a message, never a traceback. Messages go through the real pipeline
(test_jobs helpers) at real times, the command runs through click, mail leaves through the
relay stand-in."""
from __future__ import annotations

import datetime as dt
import email.utils
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from harness import ADV, CLAIRE, PAUL, wired
from sqlalchemy import select, update
from test_jobs import LEAD, agent, case_of, open_case, refuse, sent

from gateway.cli import main as cli
from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.jobs import digest
from gateway.jobs.clock import Clock
from gateway.models import Case, Delivery, Licence, OutboundMessage, Reminder, SalesDigest
from gateway.outbound import send

DAY, HOUR = dt.timedelta(days=1), dt.timedelta(hours=1)


def gateway(tmp_path: Path, settings: Settings, *args: str) -> Result:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n[support]\naddress = "{settings.support.address}"\n'
                      f'lead_address = "{LEAD}"\n', encoding="utf-8")
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def queued(engine, kind: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """(created_at, next_attempt_at) of every delivery of `kind`."""
    with session_scope(engine) as session:
        return [(a, b) for a, b in session.execute(select(Delivery.created_at, Delivery.next_attempt_at)
                                    .join(OutboundMessage).where(OutboundMessage.kind == kind))]


def test_a_future_clock_closes_the_case_now_and_its_notice_is_due_now_and_dated_now(
        loaded, settings, relay, free_port, tmp_path) -> None:
    settings = wired(settings, free_port(), relay.controller.port)
    start = utcnow() - HOUR
    number = open_case(loaded, settings, start)
    agent(loaded, settings, number, "[RESOLU]", start, text="Le correctif est appliqué.")
    send.drain(loaded, settings)
    relay.clear()

    ahead = (utcnow() + 8 * DAY).replace(microsecond=0)
    before = utcnow()
    result = gateway(tmp_path, settings, "jobs", "run", "autoclose", "--now", ahead.isoformat())
    after = utcnow()
    assert result.exit_code == 0 and "autoclose: closed: 1" in result.output, result.output

    with session_scope(loaded) as session:
        closed_at = session.get(Case, number).closed_at
    assert before <= closed_at <= after  # closed now, not in a week: the reopening delay counts from now
    detail = case_of(loaded, number)
    assert detail["status"] == "clos" and detail["events"][-1]["kind"] == "closed"
    notices = queued(loaded, "resolved_autoclose")
    assert len(notices) == 2 and all(before <= t <= after for row in notices for t in row)

    assert send.drain(loaded, settings) == {"sent": 2}  # due now: the sender takes them at once
    [notice] = relay.to(CLAIRE)
    date = email.utils.parsedate_to_datetime(notice.message["Date"]).astimezone(dt.UTC).replace(tzinfo=None)
    assert before - dt.timedelta(seconds=1) <= date <= after
    assert len(relay.to(PAUL)) == 1

    again = gateway(tmp_path, settings, "jobs", "run", "autoclose", "--now", ahead.isoformat())
    assert again.exit_code == 0 and "autoclose: nothing due" in again.output


def test_reminders_by_a_future_clock_keep_its_rhythm_and_a_second_run_does_nothing(
        loaded, settings, tmp_path) -> None:
    number = open_case(loaded, settings, utcnow() - 2 * HOUR)
    agent(loaded, settings, number, "[ATTENTE]", utcnow() - HOUR)
    ahead = (utcnow() + 4 * DAY).replace(microsecond=0)
    before = utcnow()
    for did in ("reminders: reminder: 1", "reminders: nothing due"):
        result = gateway(tmp_path, settings, "jobs", "run", "reminders", "--now", ahead.isoformat())
        assert result.exit_code == 0 and did in result.output, result.output
    with session_scope(loaded) as session:
        assert session.scalars(select(Reminder.at)).all() == [ahead]  # the next one counts from here
    for created, due in queued(loaded, "reminder"):
        assert before <= created == due <= utcnow()
    [reminder] = sent(loaded, CLAIRE, "reminder")
    closes = (ahead + 6 * DAY).replace(tzinfo=dt.UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert closes.strftime("%d/%m/%Y") in reminder.text  # what the mail promises is what will happen
    event = case_of(loaded, number)["events"][-1]
    assert event["kind"] == "reminder" and dt.datetime.fromisoformat(event["at"]).replace(tzinfo=None) <= utcnow()


def test_a_digest_by_a_clock_ahead_stops_at_the_real_time_and_the_next_one_goes_on_from_there(
        loaded, settings) -> None:
    # Both times are given: the job's clock three days ahead, the real time a Monday 10:00.
    monday = dt.datetime(2025, 3, 3, 9, 0)  # 10:00 in Paris
    refuse(loaded, settings, CLAIRE, monday - HOUR)
    refuse(loaded, settings, PAUL, monday + HOUR)  # after the early digest
    ahead = Clock(monday + 3 * DAY, monday)
    with session_scope(loaded) as session:
        [item] = digest.find(settings, session, ahead.at)
        assert digest.act(settings, session, ahead, item.key) == "digest"
    with session_scope(loaded) as session:
        early = session.scalar(select(SalesDigest))
        assert (early.refusals, early.until, early.at) == (1, monday, ahead.at)
    tuesday = monday + DAY - HOUR
    with session_scope(loaded) as session:
        [item] = digest.find(settings, session, tuesday)
        assert digest.act(settings, session, Clock(tuesday, tuesday), item.key) == "digest"
    first, second = sent(loaded, ADV, "sales_digest")
    assert CLAIRE in first.text and PAUL not in first.text
    assert PAUL in second.text and CLAIRE not in second.text  # nothing reported twice, nothing lost


@pytest.mark.parametrize("clock", ["9999-12-31T23:59:59", "0001-01-01", "0001-01-01T00:00:00+01:00",
                                   "9999-12-31T23:59:59-12:00"])
def test_a_clock_out_of_reach_is_refused_with_a_message(loaded, settings, tmp_path, clock) -> None:
    everything(loaded, settings)
    result = gateway(tmp_path, settings, "jobs", "run", "all", "--now", clock)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # click's usage error, no traceback
    assert "--now" in result.output and ("years away" in result.output or "can use" in result.output)
    assert sent(loaded, CLAIRE, "reminder") == [] and sent(loaded, ADV, "licence_expired") == []


@pytest.mark.parametrize("years", [99, -99])
def test_every_clock_within_reach_runs_every_job_cleanly(loaded, settings, tmp_path, years) -> None:
    everything(loaded, settings)
    now = utcnow()
    clock = now.replace(year=now.year + years, day=min(now.day, 28), microsecond=0)
    for _ in range(2):
        result = gateway(tmp_path, settings, "jobs", "run", "all", "--now", clock.isoformat())
        assert result.exit_code == 0 and "error" not in result.output, (result.output, result.exception)
    for row in queued(loaded, "reminder") + queued(loaded, "licence_expired"):
        assert all(t <= utcnow() for t in row)


def everything(engine, settings) -> None:
    """Something for every job: a waiting case, a resolved one, an unanswered one, a refusal,
    a licence with an end date."""
    now = utcnow() - HOUR
    agent(engine, settings, open_case(engine, settings, now), "[ATTENTE]", now)
    agent(engine, settings, open_case(engine, settings, now), "[RESOLU]", now, text="Corrigé.")
    open_case(engine, settings, now)
    refuse(engine, settings, CLAIRE, now)
    with session_scope(engine) as session:
        session.execute(update(Licence).where(Licence.serial == "SN-88C1-5530").values(ends_on=now.date()))
