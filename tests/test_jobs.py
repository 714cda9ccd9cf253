"""Scheduled work (PRODUCT.md "Scheduled work"), with an explicit clock: messages go through
the real pipeline (intake.store + run.process), jobs run as `gateway jobs run` runs them,
and what they send is read from the outbox or, end to end, from the relay stand-in."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from harness import ADV, CLAIRE, MATHILDE, OLIVER, PAUL, agent_mail, mail, wired
from sqlalchemy import func, select, update

from gateway import intake, views, workdays
from gateway.cli import main as cli
from gateway.config import ConfigError, Settings, load
from gateway.db import make_engine, session_scope
from gateway.jobs import record, reminders, runner
from gateway.models import (
    Case,
    CaseEvent,
    Delivery,
    Escalation,
    InboundMessage,
    Licence,
    OutboundMessage,
    Reminder,
    SalesDigest,
)
from gateway.outbound import compose, send
from gateway.pipeline import run as pipeline
from gateway.scheduler import Scheduler, missed

PARIS = ZoneInfo("Europe/Paris")
LEAD = "responsable.support@editeur.example"
T0 = dt.datetime(2025, 3, 3, 8, 0)  # Monday 3 March 2025, 09:00 in Paris
OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"
QUESTION = "Pouvez-vous nous envoyer le journal des erreurs ?"
DAY, HOUR = dt.timedelta(days=1), dt.timedelta(hours=1)


def paris(*args: int) -> dt.datetime:
    """A Paris wall-clock time as naive UTC."""
    return workdays.to_utc(dt.datetime(*args, tzinfo=PARIS))


def deliver(engine, settings, msg, now):
    stored = intake.store(engine, msg.as_bytes(), "pipe")
    pipeline.process(engine, settings, stored.id, now=now)
    with session_scope(engine) as session:
        return session.get(InboundMessage, stored.id).outcome


def open_case(engine, settings, now, sender=CLAIRE, subject=OPEN, cc=(PAUL,)):
    stored = intake.store(engine, mail(sender, subject, cc=list(cc)).as_bytes(), "pipe")
    outcome = pipeline.process(engine, settings, stored.id, now=now)
    assert outcome is not None and outcome.outcome == "created", outcome
    return outcome.case_id


def agent(engine, settings, number, flag, now, text=QUESTION):
    msg = agent_mail(engine, settings, MATHILDE, number, f"[Dossier #{number}] {flag} RE: suivi", text)
    assert deliver(engine, settings, msg, now) == "appended"


def customer(engine, settings, number, now, text="Voici le journal.", **kw):
    return deliver(engine, settings, mail(CLAIRE, f"RE: [Dossier #{number}] Factures impossibles", text, **kw), now)


def job(name, settings, engine, now):
    result = runner.run(name, settings, engine, now)
    assert not result.errors, result.errors
    return result.did


def sent(engine, address, kind=None):
    """The outbound messages queued for `address` (of one kind), oldest first."""
    with session_scope(engine) as session:
        query = select(OutboundMessage).join(Delivery).where(Delivery.recipient == address)
        if kind:
            query = query.where(OutboundMessage.kind == kind)
        return list(session.scalars(query.order_by(Delivery.id)))


def case_of(engine, number):
    with session_scope(engine) as session:
        return views.case_detail(session, number)


def waiting_case(engine, settings, asked_at=T0 + HOUR):
    """A case opened at T0 whose agent asks a question (attente_client) at `asked_at`."""
    number = open_case(engine, settings, T0)
    agent(engine, settings, number, "[ATTENTE]", asked_at)
    assert case_of(engine, number)["status"] == "attente_client"
    return number


# -- reminders, end to end ------------------------------------------------------------------

def test_a_waiting_case_gets_two_reminders_then_closes_itself(loaded, settings, relay, free_port) -> None:
    settings = wired(settings, free_port(), relay.controller.port)
    asked = T0 + HOUR
    number = waiting_case(loaded, settings, asked)
    send.drain(loaded, settings)
    relay.clear()

    def step(at: dt.datetime) -> dict[str, int]:
        # The job's clock is `at`; what it sends is due at once, so the sender runs on the real time.
        did = job("reminders", settings, loaded, at)
        send.drain(loaded, settings)
        return did

    assert step(asked + 3 * DAY - dt.timedelta(minutes=1)) == {}
    assert step(asked + 3 * DAY) == {"reminder": 1}
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL})
    first = next(r for r in got if r.rcpt == CLAIRE)
    assert first.subject == f"[Dossier #{number}] Factures impossibles"
    assert first.message["Auto-Submitted"] == "auto-generated"
    assert first.message["To"].addresses[0].addr_spec == CLAIRE
    assert [a.addr_spec for a in first.message["Cc"].addresses] == [PAUL]
    with session_scope(loaded) as session:
        thread = session.get(Case, number).thread_id
    assert first.message["In-Reply-To"].strip() == thread and thread in first.message["References"]
    assert QUESTION in first.text() and "relance 1 sur 2" in first.text()
    assert "12/03/2025" in first.text()  # when it will close: reminder 2 on the 9th, closure on the 12th
    assert str(first.message["Reply-To"].addresses[0].addr_spec).startswith(f"assistance+{number}-")

    assert step(asked + 3 * DAY) == {}  # the same run again sends nothing
    assert step(asked + 6 * DAY - dt.timedelta(minutes=1)) == {}
    assert step(asked + 6 * DAY) == {"reminder": 1}
    assert "relance 2 sur 2" in relay.wait_for(lambda r: len(r) >= 4)[-1].text()
    assert step(asked + 9 * DAY - dt.timedelta(minutes=1)) == {}
    assert step(asked + 9 * DAY) == {"closed": 1}
    notice = relay.wait_for(lambda r: len(r) >= 6)[-1]
    assert notice.message["Auto-Submitted"] == "auto-generated"
    assert "clôturé automatiquement" in notice.text() and "2 relances" in notice.text()
    assert step(asked + 20 * DAY) == {}

    detail = case_of(loaded, number)
    assert detail["status"] == "clos"
    assert [e["kind"] for e in detail["events"]][-3:] == ["reminder", "reminder", "closed"]
    assert [r.rcpt for r in relay.received].count(CLAIRE) == 3
    assert all(r.rcpt not in (MATHILDE,) for r in relay.received)

    # A reply within cases.reopen_days reopens the automatically closed case.
    assert customer(loaded, settings, number, asked + 10 * DAY) == "appended"
    assert case_of(loaded, number)["status"] == "en_cours"


def test_reminders_speak_the_contacts_language(loaded, settings) -> None:
    number = open_case(loaded, settings, T0, sender=OLIVER, cc=(),
                       subject="[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY high] Ledger export")
    agent(loaded, settings, number, "[WAITING]", T0)
    job("reminders", settings, loaded, T0 + 3 * DAY)
    [reminder] = sent(loaded, OLIVER, "reminder")
    assert "reminder 1 of 2" in reminder.text and reminder.auto_submitted == "auto-generated"


# -- what resets the clock ---------------------------------------------------------------------

def test_a_customer_answer_ends_the_wait_and_a_new_question_starts_again(loaded, settings) -> None:
    number = waiting_case(loaded, settings)
    assert job("reminders", settings, loaded, T0 + HOUR + 3 * DAY) == {"reminder": 1}
    assert customer(loaded, settings, number, T0 + 4 * DAY) == "appended"
    assert case_of(loaded, number)["status"] == "en_cours"
    assert job("reminders", settings, loaded, T0 + 30 * DAY) == {}  # not waiting: no reminder

    asked = T0 + 30 * DAY
    agent(loaded, settings, number, "[ATTENTE]", asked)
    assert job("reminders", settings, loaded, asked + 3 * DAY - HOUR) == {}
    assert job("reminders", settings, loaded, asked + 3 * DAY) == {"reminder": 1}
    texts = [m.text for m in sent(loaded, CLAIRE, "reminder")]
    assert len(texts) == 2 and all("relance 1 sur 2" in t for t in texts)


def test_an_agent_asking_again_restarts_the_wait(loaded, settings) -> None:
    number = waiting_case(loaded, settings)
    assert job("reminders", settings, loaded, T0 + HOUR + 3 * DAY) == {"reminder": 1}
    again = T0 + 5 * DAY
    agent(loaded, settings, number, "[ATTENTE]", again, text="Et la version exacte du logiciel ?")
    assert job("reminders", settings, loaded, T0 + HOUR + 6 * DAY) == {}  # the old wait is over
    assert job("reminders", settings, loaded, again + 3 * DAY) == {"reminder": 1}
    latest = sent(loaded, CLAIRE, "reminder")[-1].text
    assert "relance 1 sur 2" in latest and "version exacte" in latest


def test_an_out_of_office_reply_neither_resets_nor_pauses_the_wait(loaded, settings) -> None:
    number = waiting_case(loaded, settings)
    away = customer(loaded, settings, number, T0 + 2 * DAY, text="Je suis absente jusqu'au 20 mars.",
                    headers={"Auto-Submitted": "auto-replied"})
    assert away == "ignored"
    assert case_of(loaded, number)["status"] == "attente_client"
    assert job("reminders", settings, loaded, T0 + HOUR + 3 * DAY) == {"reminder": 1}


def test_an_internal_note_does_not_restart_the_wait(loaded, settings) -> None:
    number = waiting_case(loaded, settings)
    agent(loaded, settings, number, "[NOTE]", T0 + 2 * DAY, text="Relancer par téléphone ?")
    assert job("reminders", settings, loaded, T0 + HOUR + 3 * DAY) == {"reminder": 1}


def test_business_days_skip_weekends_and_public_holidays(loaded, settings) -> None:
    settings = dataclasses.replace(settings, reminders=dataclasses.replace(settings.reminders, business_days=True))
    asked = paris(2025, 5, 2, 10, 0)  # Friday; Thursday 8 May is a public holiday
    number = open_case(loaded, settings, asked - HOUR)
    agent(loaded, settings, number, "[ATTENTE]", asked)
    assert job("reminders", settings, loaded, paris(2025, 5, 6, 18, 0)) == {}
    assert job("reminders", settings, loaded, paris(2025, 5, 7, 10, 0)) == {"reminder": 1}  # Mon, Tue, Wed
    assert job("reminders", settings, loaded, paris(2025, 5, 12, 18, 0)) == {}  # Fri 9, Mon 12 ...
    assert job("reminders", settings, loaded, paris(2025, 5, 13, 10, 0)) == {"reminder": 1}  # ... Tue 13
    assert job("reminders", settings, loaded, paris(2025, 5, 16, 10, 0)) == {"closed": 1}


def test_workdays_arithmetic() -> None:
    friday_5pm = paris(2025, 3, 28, 17, 0)  # the clocks go forward on Sunday 30 March
    assert workdays.add_days(friday_5pm, 3, PARIS, business=True) == paris(2025, 4, 2, 17, 0)
    assert workdays.add_days(friday_5pm, 1, PARIS, business=True) == paris(2025, 3, 31, 17, 0)
    assert workdays.add_days(friday_5pm, 3, PARIS) == friday_5pm + 3 * DAY
    assert workdays.add_days(paris(2025, 12, 24, 9, 0), 1, PARIS, business=True) == paris(2025, 12, 26, 9, 0)
    assert not workdays.is_business_day(dt.date(2025, 4, 21))  # Easter Monday
    assert workdays.is_business_day(dt.date(2025, 4, 18))  # Good Friday, except in Moselle
    assert not workdays.is_business_day(dt.date(2025, 4, 18), "FR-57")


# -- auto-close of resolved cases --------------------------------------------------------------

def test_a_resolved_case_closes_itself_after_the_delay(loaded, settings) -> None:
    number = open_case(loaded, settings, T0)
    resolved = T0 + 2 * HOUR
    agent(loaded, settings, number, "[RESOLU]", resolved, text="Le correctif est appliqué.")
    assert job("autoclose", settings, loaded, resolved + 7 * DAY - dt.timedelta(minutes=1)) == {}
    assert job("autoclose", settings, loaded, resolved + 7 * DAY) == {"closed": 1}
    assert job("autoclose", settings, loaded, resolved + 8 * DAY) == {}
    [notice] = sent(loaded, CLAIRE, "resolved_autoclose")
    assert "03/03/2025" in notice.text and notice.auto_submitted == "auto-generated"
    assert len(sent(loaded, PAUL, "resolved_autoclose")) == 1
    detail = case_of(loaded, number)
    assert detail["status"] == "clos" and detail["events"][-1]["kind"] == "closed"


def test_a_customer_reply_on_a_resolved_case_stops_the_auto_close(loaded, settings) -> None:
    number = open_case(loaded, settings, T0)
    agent(loaded, settings, number, "[RESOLU]", T0 + HOUR, text="Corrigé.")
    assert customer(loaded, settings, number, T0 + 3 * DAY, text="Non, toujours en erreur.") == "appended"
    assert job("autoclose", settings, loaded, T0 + 30 * DAY) == {}
    assert case_of(loaded, number)["status"] == "en_cours"


# -- escalation -----------------------------------------------------------------------------------

def test_an_unanswered_case_is_escalated_once_to_the_lead(loaded, settings) -> None:
    number = open_case(loaded, settings, T0)  # haute: 8 hours
    answered = open_case(loaded, settings, T0)
    agent(loaded, settings, answered, "", T0 + HOUR, text="Nous regardons.")
    assert job("escalation", settings, loaded, T0 + 8 * HOUR - dt.timedelta(minutes=1)) == {}
    assert job("escalation", settings, loaded, T0 + 8 * HOUR) == {"escalation": 1}
    assert job("escalation", settings, loaded, T0 + 30 * HOUR) == {}
    [escalation] = sent(loaded, LEAD, "escalation")
    assert escalation.case_id == number and escalation.auto_submitted == "auto-generated"
    assert f"[Dossier #{number}]" in escalation.subject and "8 h" in escalation.text
    with session_scope(loaded) as session:
        assert escalation.in_reply_to == session.get(Case, number).thread_id
    event = case_of(loaded, number)["events"][-1]
    assert event["kind"] == "escalation" and event["internal"] is True
    assert sent(loaded, CLAIRE, "escalation") == []


def test_criticality_sets_the_escalation_delay(loaded, settings) -> None:
    blocking = open_case(loaded, settings, T0, subject=OPEN.replace("haute", "bloquante"))
    low = open_case(loaded, settings, T0, subject=OPEN.replace("haute", "basse"))
    assert job("escalation", settings, loaded, T0 + 2 * HOUR) == {"escalation": 1}
    assert job("escalation", settings, loaded, T0 + 71 * HOUR) == {}
    assert job("escalation", settings, loaded, T0 + 72 * HOUR) == {"escalation": 1}
    assert [m.case_id for m in sent(loaded, LEAD, "escalation")] == [blocking, low]


# -- sales administration --------------------------------------------------------------------------

def refuse(engine, settings, sender, now):
    subject = "[CLIENT C10042] [SERIE SN-1B22-0042] [CRITICITE 2] Bulletins de paie"
    assert deliver(engine, settings, mail(sender, subject), now) == "refused"


def test_the_daily_digest_lists_the_days_refusals_once(loaded, settings) -> None:
    refuse(loaded, settings, CLAIRE, paris(2025, 3, 3, 10, 0))
    refuse(loaded, settings, PAUL, paris(2025, 3, 3, 23, 30))  # 22:30 UTC: still Monday in Paris
    refuse(loaded, settings, PAUL, paris(2025, 3, 4, 0, 30))   # Tuesday in Paris
    assert job("adv-digest", settings, loaded, paris(2025, 3, 3, 23, 59)) == {"empty digest": 1}  # Sunday's
    assert job("adv-digest", settings, loaded, paris(2025, 3, 4, 8, 0)) == {"digest": 1}
    assert job("adv-digest", settings, loaded, paris(2025, 3, 4, 18, 0)) == {}
    [monday] = sent(loaded, ADV, "sales_digest")
    assert "2 demandes" in monday.subject and "03/03/2025" in monday.subject
    assert CLAIRE in monday.text and PAUL in monday.text and "SN-1B22-0042" in monday.text
    assert monday.auto_submitted == "auto-generated" and monday.case_id is None
    assert job("adv-digest", settings, loaded, paris(2025, 3, 5, 8, 0)) == {"digest": 1}
    tuesday = sent(loaded, ADV, "sales_digest")[-1]
    assert "1 demande " in tuesday.subject and PAUL in tuesday.text and CLAIRE not in tuesday.text


def test_a_digest_after_downtime_covers_every_missed_day(loaded, settings) -> None:
    job("adv-digest", settings, loaded, paris(2025, 3, 3, 8, 0))
    refuse(loaded, settings, CLAIRE, paris(2025, 3, 3, 10, 0))
    refuse(loaded, settings, PAUL, paris(2025, 3, 5, 10, 0))
    assert job("adv-digest", settings, loaded, paris(2025, 3, 7, 8, 0)) == {"digest": 1}
    [digest] = sent(loaded, ADV, "sales_digest")
    assert CLAIRE in digest.text and PAUL in digest.text and "du 03/03/2025 00:00 au 07/03/2025 00:00" in digest.text


def test_an_expired_licence_becomes_inactive_and_sales_admin_is_told_once(loaded, settings) -> None:
    with session_scope(loaded) as session:
        session.execute(update(Licence).where(Licence.serial == "SN-88C1-5530").values(ends_on=dt.date(2025, 3, 3)))
    assert job("licence-expiry", settings, loaded, paris(2025, 3, 3, 23, 59)) == {}  # valid all day
    assert job("licence-expiry", settings, loaded, paris(2025, 3, 4, 0, 15)) == {"expired": 1}
    assert job("licence-expiry", settings, loaded, paris(2025, 3, 4, 0, 30)) == {}
    [notice] = sent(loaded, ADV, "licence_expired")
    assert "SN-88C1-5530" in notice.subject and "03/03/2025" in notice.text
    # An import that makes it active again with the same end date is undone, without a second notice.
    with session_scope(loaded) as session:
        session.execute(update(Licence).where(Licence.serial == "SN-88C1-5530").values(active=True))
    assert job("licence-expiry", settings, loaded, paris(2025, 3, 5, 0, 15)) == {"made inactive again": 1}
    assert len(sent(loaded, ADV, "licence_expired")) == 1
    with session_scope(loaded) as session:
        assert session.scalar(select(Licence.active).where(Licence.serial == "SN-88C1-5530")) is False


# -- exactly once ------------------------------------------------------------------------------------

def everything_due(engine, settings) -> list[int]:
    """Five waiting cases due a reminder, unanswered ones due an escalation, a refusal for
    the digest and an expired licence, all at T0 + 4 days."""
    numbers = [waiting_case(engine, settings) for _ in range(5)]
    open_case(engine, settings, T0)
    refuse(engine, settings, CLAIRE, T0 + 3 * DAY)
    with session_scope(engine) as session:
        session.execute(update(Licence).where(Licence.serial == "SN-88C1-5530").values(ends_on=dt.date(2025, 3, 4)))
    return numbers


def test_two_gateways_running_the_jobs_at_once_do_everything_once(loaded, settings) -> None:
    numbers = everything_due(loaded, settings)
    now = T0 + 4 * DAY
    other = make_engine(settings)  # a second gateway: its own connections
    barrier = threading.Barrier(2)
    results: list[list[runner.Run]] = []

    def gateway(engine) -> None:
        barrier.wait()
        results.append(runner.run_all(settings, engine, now))

    try:
        threads = [threading.Thread(target=gateway, args=(e,)) for e in (loaded, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        other.dispose()
    assert len(results) == 2 and not any(r.errors for runs in results for r in runs)
    for address in (CLAIRE, PAUL):
        assert sorted(m.case_id for m in sent(loaded, address, "reminder")) == numbers
    assert len(sent(loaded, LEAD, "escalation")) == 1
    assert len(sent(loaded, ADV, "sales_digest")) == 1
    assert len(sent(loaded, ADV, "licence_expired")) == 1
    with session_scope(loaded) as session:
        assert session.scalar(select(func.count()).select_from(Reminder)) == 5
        assert session.scalar(select(func.count()).select_from(Escalation)) == 1
        assert session.scalar(select(func.count()).select_from(SalesDigest)) == 1
        assert session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.kind == "reminder")) == 5
    assert sum(r.did.get("reminder", 0) for runs in results for r in runs) == 5


CRASH = """
import os, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from gateway.jobs import runner

statement, times, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
runner.Pace.FIRST = runner.Pace.LEAST = runner.Pace.MOST = batch
inserted = []

@event.listens_for(Engine, "after_cursor_execute")
def die(conn, cursor, sql, parameters, context, executemany):
    if sql.lstrip().upper().startswith(statement):
        inserted.append(sql)
        if len(inserted) == times:
            os._exit(9)  # the process dies half-way, mid-transaction

from gateway.cli import main
main(["jobs", "run", "reminders", "--now", sys.argv[1]])
"""


def crash_reminders(settings, tmp_path: Path, now: dt.datetime, statement: str, times: int, batch: int) -> None:
    """`gateway jobs run reminders` in a process that dies at the `times`-th `statement`,
    taking `batch` cases per transaction."""
    config = tmp_path / "gateway.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n[support]\naddress = "{settings.support.address}"\n',
                      encoding="utf-8")
    env = dict(os.environ, GATEWAY_CONFIG=str(config))
    child = subprocess.run([sys.executable, "-c", CRASH, now.isoformat(), statement, str(times), str(batch)],
                           env=env, capture_output=True, text=True, timeout=60)
    assert child.returncode == 9, child.stderr


def test_a_job_that_dies_half_way_is_finished_once_by_the_next_run(loaded, settings, tmp_path: Path) -> None:
    numbers = [waiting_case(loaded, settings) for _ in range(3)]
    now = T0 + 4 * DAY
    crash_reminders(settings, tmp_path, now, "INSERT INTO CASE_REMINDERS", 2, batch=1)
    assert [m.case_id for m in sent(loaded, CLAIRE, "reminder")] == numbers[:1]
    with session_scope(loaded) as session:
        assert record.read(session, "reminders")["outcome"] == "running"  # visibly interrupted

    assert job("reminders", settings, loaded, now) == {"reminder": 2}
    assert sorted(m.case_id for m in sent(loaded, CLAIRE, "reminder")) == numbers
    assert job("reminders", settings, loaded, now) == {}
    with session_scope(loaded) as session:
        assert record.read(session, "reminders")["outcome"] == "ok"


def test_a_batch_that_dies_before_its_mail_is_written_leaves_nothing_half_done(loaded, settings,
                                                                                tmp_path: Path) -> None:
    numbers = [waiting_case(loaded, settings) for _ in range(3)]
    now = T0 + 4 * DAY
    # The three cases in one transaction: it dies once their reminders and events are written.
    crash_reminders(settings, tmp_path, now, "INSERT INTO OUTBOUND_MESSAGES", 1, batch=3)
    assert sent(loaded, CLAIRE, "reminder") == []
    with session_scope(loaded) as session:
        assert session.scalar(select(func.count()).select_from(Reminder)) == 0
        assert session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.kind == "reminder")) == 0

    assert job("reminders", settings, loaded, now) == {"reminder": 3}
    assert sorted(m.case_id for m in sent(loaded, CLAIRE, "reminder")) == numbers
    assert job("reminders", settings, loaded, now) == {}


def test_a_batch_that_meets_another_gateways_reminder_is_done_case_by_case(loaded, settings, monkeypatch) -> None:
    numbers = [waiting_case(loaded, settings) for _ in range(3)]
    assert job("reminders", settings, loaded, T0 + 4 * DAY) == {"reminder": 3}
    # As if another gateway had sent the first reminder on the middle case just now: this
    # run does not see it, and tries to send it again in the batch of the three cases.
    seen = reminders.waits

    def unseen(session, *where):
        found = seen(session, *where)
        if numbers[1] in found:
            found[numbers[1]] = reminders.Wait(found[numbers[1]].since, ())
        return found

    monkeypatch.setattr(reminders, "waits", unseen)
    assert job("reminders", settings, loaded, T0 + 7 * DAY) == {"reminder": 2, "skipped": 1}
    with session_scope(loaded) as session:
        numbers_sent = session.execute(select(Reminder.case_id, Reminder.number).order_by(Reminder.case_id,
                                                                                         Reminder.number)).all()
    assert [tuple(row) for row in numbers_sent] == [(numbers[0], 1), (numbers[0], 2), (numbers[1], 1),
                                                    (numbers[2], 1), (numbers[2], 2)]
    assert len(sent(loaded, CLAIRE, "reminder")) == 5


# -- the command line, status and the scheduler ----------------------------------------------------

def test_jobs_run_from_the_command_line_and_status_shows_them(loaded, settings, tmp_path: Path) -> None:
    number = waiting_case(loaded, settings)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n', encoding="utf-8")
    at = (T0 + HOUR + 3 * DAY).replace(tzinfo=dt.UTC).astimezone(PARIS).isoformat()
    result = CliRunner().invoke(cli, ["--config", str(config), "jobs", "run", "all", "--now", at])
    assert result.exit_code == 0, result.output
    assert "reminders: reminder: 1" in result.output and "escalation: nothing due" in result.output
    assert [m.case_id for m in sent(loaded, CLAIRE, "reminder")] == [number]
    with session_scope(loaded) as session:
        jobs = views.status(session)["jobs"]
    assert jobs["reminders"]["last_run"] == (T0 + HOUR + 3 * DAY).replace(tzinfo=dt.UTC).isoformat()
    assert jobs["reminders"]["did"] == {"reminder": 1} and jobs["reminders"]["outcome"] == "ok"
    listing = CliRunner().invoke(cli, ["--config", str(config), "jobs", "list"])
    assert listing.exit_code == 0 and "reminder: 1" in listing.output
    bad = CliRunner().invoke(cli, ["--config", str(config), "jobs", "run", "reminders", "--now", "demain"])
    assert bad.exit_code == 2 and "ISO-8601" in bad.output


def test_the_scheduler_runs_due_jobs_at_start_and_records_the_next_run(loaded, settings) -> None:
    from gateway.db import utcnow
    opened = utcnow() - 3 * HOUR
    number = open_case(loaded, settings, opened, subject=OPEN.replace("haute", "bloquante"))
    scheduler = Scheduler(settings, loaded)
    scheduler.start()
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        while dt.datetime.now() < deadline:
            with session_scope(loaded) as session:
                jobs = record.report(session)
            if all(j.get("outcome") == "ok" and j.get("expected") is not None for j in jobs.values()):
                break
            threading.Event().wait(0.05)
        for job_ in scheduler.scheduler.get_jobs():
            assert job_.coalesce and job_.max_instances == 1 and job_.misfire_grace_time is None
    finally:
        scheduler.stop()
    assert all(j.get("outcome") == "ok" for j in jobs.values()), jobs
    assert [m.case_id for m in sent(loaded, LEAD, "escalation")] == [number]
    assert dt.datetime.fromisoformat(jobs["escalation"]["next_run"]) > opened.replace(tzinfo=dt.UTC) + 3 * HOUR
    assert "adv-digest" in jobs and jobs["adv-digest"]["last_ok"]  # never ran: caught up at start


def test_a_daily_job_catches_up_only_when_its_time_passed_unseen(settings) -> None:
    at = dt.time(8, 0)
    now = paris(2025, 3, 4, 9, 0)
    assert missed(at, settings, None, now)
    assert missed(at, settings, paris(2025, 3, 3, 8, 0), now)      # today's 08:00 went by
    assert not missed(at, settings, paris(2025, 3, 4, 8, 0), now)
    assert not missed(at, settings, paris(2025, 3, 3, 8, 0), paris(2025, 3, 4, 7, 0))


# -- templates -------------------------------------------------------------------------------

def template_contexts(evil: str) -> dict[str, dict]:
    from test_templates import make_case
    case = make_case(title="Impossible d'éditer le grand livre" + evil)
    base = {"case": case, "case_subject": f"[Dossier #{case.id}] {case.title}", "settings": Settings()}
    staff = {**base, "case": None, "case_subject": ""}
    refusal = {"at": dt.datetime(2025, 3, 3, 10, 5), "sender": "marie@durand.example", "subject": "Paie" + evil,
               "request": "open"}
    return {
        "reminder": {**base, "number": 1, "total": 2, "question": QUESTION + evil, "asked_on": dt.date(2025, 3, 3),
                     "closes_on": dt.date(2025, 3, 12)},
        "autoclose_notice": {**base, "reminders": 2, "asked_on": dt.date(2025, 3, 3)},
        "resolved_autoclose": {**base, "days": 7, "resolved_on": dt.date(2025, 3, 3)},
        "escalation": {**base, "hours": 8, "opened_at": dt.datetime(2025, 3, 3, 9, 0), "waited_hours": 9,
                       "details": "Tout est bloqué." + evil},
        "sales_digest": {**staff, "day": dt.date(2025, 3, 3), "since": dt.datetime(2025, 3, 1),
                         "until": dt.datetime(2025, 3, 4), "one_day": False, "total": 2, "groups": [
                             {"licence": case.licence, "client": case.client, "refusals": [refusal, refusal]}]},
        "licence_expired": {**staff, "licence": SimpleNamespace(serial="SN-7F3A-2291", product="Compta Pro" + evil),
                            "client": case.client, "ends_on": dt.date(2025, 3, 3), "open_cases": 1},
        "licence_expiring": {**staff, "licence": SimpleNamespace(
            serial="SN-7F3A-2291", product="Compta Pro" + evil, modules=("Paie" + evil,), active=True,
            ends_on=dt.date(2025, 4, 2)), "client": case.client, "ends_on": dt.date(2025, 4, 2), "days": 30},
    }


@pytest.mark.parametrize("lang", ("fr", "en"))
@pytest.mark.parametrize("kind", sorted(template_contexts("")))
def test_job_templates_render_escaped_and_well_formed(kind: str, lang: str) -> None:
    from test_templates import XSS, XSS_ESCAPED, _Checker
    ctx = template_contexts(XSS)[kind]
    rendered = compose.render(Settings().templates_dir, kind, lang, ctx)
    assert rendered.subject and "\n" not in rendered.subject
    if ctx["case"] is not None:
        assert rendered.subject == compose.clean_header(ctx["case_subject"]) or ctx["case_subject"] in rendered.subject
        assert "4711" in rendered.text and "4711" in rendered.html
    assert "None" not in rendered.text + rendered.html and "\u00a0" not in rendered.text
    assert XSS not in rendered.html and XSS_ESCAPED in rendered.html and "&lt;" not in rendered.text
    assert all(len(line) <= 80 for line in rendered.text.splitlines() if "<" not in line and "@" not in line)
    checker = _Checker()
    checker.feed(rendered.html)
    checker.close()
    assert not checker.errors and checker.stack == []


def test_jobs_settings_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[jobs]\ntimezone = "Europe/Atlantis"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="time zone"):
        load(config)
    config.write_text('[jobs]\nadv_digest_at = "8h"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="adv_digest_at"):
        load(config)
    config.write_text('[jobs]\nadv_digest_at = "07:30"\nreminders_every_minutes = 10\n', encoding="utf-8")
    assert load(config).jobs.adv_digest_at == "07:30" and load(config).jobs.reminders_every_minutes == 10
