"""What the jobs share: the time zone, delays in days, the case lock, timeline events and
an outbox for automatic mail. Never commits.

A job may also act on many things in one transaction (`Job.act_many`, the runner's
batches): it locks them all first, in one statement and in id order (two gateways never
wait for each other in a circle), then checks again what is due, as `act` does for one.

`find` takes the job's clock; `act` takes both times (clock.Clock): it checks what is due
and writes the job's own record with `clock.at`, and dates mail and case changes with
`clock.now` (`add_event` and `post` are given that one)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, lazyload

from gateway import cases, workdays
from gateway.config import Settings
from gateway.jobs.clock import Clock
from gateway.models import Case, CaseEvent, Client, Contact, DistributionEntry
from gateway.outbound.outbox import AUTO_GENERATED, Outbox, Recipient


@dataclass(frozen=True)
class Item:
    """One thing a job found due: a case, licence or day (`key`) and what it will do."""
    key: int
    action: str


@dataclass(frozen=True)
class Job:
    name: str
    find: Callable[[Settings, Session, dt.datetime], list[Item]]   # the job's clock; reads only
    act: Callable[[Settings, Session, Clock, int], str | None]     # None: no longer due
    # Many things in one transaction: what each did (None: no longer due). Optional.
    act_many: Callable[[Settings, Session, Clock, list[int]], dict[int, str | None]] | None = None


def zone(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.jobs.timezone)


def local(settings: Settings, moment: dt.datetime) -> dt.datetime:
    """A naive UTC timestamp as naive local time, for people to read."""
    return workdays.to_local(moment, zone(settings)).replace(tzinfo=None)


def today(settings: Settings, now: dt.datetime) -> dt.date:
    return workdays.to_local(now, zone(settings)).date()


def later(settings: Settings, start: dt.datetime, days: int) -> dt.datetime:
    """`start` plus a reminder delay of `days`, in business days where configured."""
    return workdays.add_days(start, days, zone(settings), settings.reminders.business_days,
                             settings.jobs.holidays)


def lock_case(session: Session, case_id: int) -> Case | None:
    """The case, locked for the rest of the transaction. The first statement is a write, so
    PostgreSQL takes the row lock and SQLite its write lock now: a message on the case or
    another gateway's job waits for us (or we for it), and what we read next is current."""
    session.execute(update(Case).where(Case.id == case_id).values(updated_at=Case.updated_at)
                    .execution_options(synchronize_session=False))
    return session.get(Case, case_id, populate_existing=True)


def lock_cases(session: Session, case_ids: Sequence[int]) -> dict[int, Case]:
    """The cases, locked for the rest of the transaction, in one statement. On PostgreSQL
    the rows are locked in id order, with the lock `lock_case`'s UPDATE takes (FOR NO KEY
    UPDATE: rows that merely refer to a case are not held up); SQLite's write lock was
    taken at BEGIN (db.make_engine: BEGIN IMMEDIATE). What is read next is current on both."""
    found = session.scalars(select(Case).where(Case.id.in_(case_ids)).order_by(Case.id)
                            .with_for_update(key_share=True)
                            .options(lazyload(Case.distribution)).execution_options(populate_existing=True))
    return {case.id: case for case in found}


def recipients(session: Session, found: dict[int, Case]) -> dict[int, tuple[list[Recipient], list[Recipient]]]:
    """(To, Cc) for each case, as pipeline.work.case_recipients gives them (the main contact,
    then the distribution list in its order), read in two statements for all the cases."""
    people = (Contact.id, Contact.email, Contact.name, Contact.language, Client.language)
    main = {contact_id: Recipient(email, name, language or client_language or "fr")
            for contact_id, email, name, language, client_language in session.execute(
                select(*people).join(Client, Contact.client_id == Client.id)
                .where(Contact.id.in_({case.main_contact_id for case in found.values()})))}
    out = {i: ([main[case.main_contact_id]], list[Recipient]()) for i, case in found.items()}
    for case_id, contact_id, email, name, language, client_language in session.execute(
            select(DistributionEntry.case_id, *people).join(Contact, DistributionEntry.contact_id == Contact.id)
            .join(Client, Contact.client_id == Client.id)
            .where(DistributionEntry.case_id.in_(list(found))).order_by(DistributionEntry.id)):
        if contact_id != found[case_id].main_contact_id:
            out[case_id][1].append(Recipient(email, name, language or client_language or "fr"))
    return out


def add_event(session: Session, settings: Settings, now: dt.datetime, case: Case, kind: str,
              text: str, internal: bool = False) -> None:
    """An event on the case's timeline, by the gateway itself (the support address)."""
    cases.event(session, case, kind, author=settings.support.address, text=text, now=now, internal=internal)


def add_events(session: Session, settings: Settings, now: dt.datetime, events: list[tuple[int, str, str]]) -> None:
    """Events (case id, kind, text) by the gateway itself, visible to the customer, in one
    statement: what `add_event` writes, for many cases."""
    if events:
        session.execute(insert(CaseEvent), [
            dict(case_id=case_id, kind=kind, author=settings.support.address, at=now, text=text, internal=False,
                 inbound_id=None) for case_id, kind, text in events])


def post(session: Session, settings: Settings, now: dt.datetime, kind: str, to: list[Recipient],
         cc: Sequence[Recipient] = (), case: Case | None = None,
         context: dict[str, Any] | None = None) -> list[int]:
    """Automatic mail (Auto-Submitted: auto-generated), threaded with the case if any."""
    return Outbox(session, settings, now).post(kind, to, list(cc), case=case, context=context,
                                               auto_submitted=AUTO_GENERATED)


def staff(settings: Settings, address: str) -> Recipient:
    """A recipient inside the vendor (lead, sales administration): the support language."""
    return Recipient(address, "", settings.support.language)
