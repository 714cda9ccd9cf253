"""What the jobs share: the time zone, delays in days, the case lock, timeline events and
an outbox for automatic mail. Never commits.

`find` takes the job's clock; `act` takes both times (clock.Clock): it checks what is due
and writes the job's own record with `clock.at`, and dates mail and case changes with
`clock.now` (`add_event` and `post` are given that one)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlalchemy.orm import Session

from gateway import cases, workdays
from gateway.config import Settings
from gateway.jobs.clock import Clock
from gateway.models import Case
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


def add_event(session: Session, settings: Settings, now: dt.datetime, case: Case, kind: str,
              text: str, internal: bool = False) -> None:
    """An event on the case's timeline, by the gateway itself (the support address)."""
    cases.event(session, case, kind, author=settings.support.address, text=text, now=now, internal=internal)


def post(session: Session, settings: Settings, now: dt.datetime, kind: str, to: list[Recipient],
         cc: Sequence[Recipient] = (), case: Case | None = None,
         context: dict[str, Any] | None = None) -> list[int]:
    """Automatic mail (Auto-Submitted: auto-generated), threaded with the case if any."""
    return Outbox(session, settings, now).post(kind, to, list(cc), case=case, context=context,
                                               auto_submitted=AUTO_GENERATED)


def staff(settings: Settings, address: str) -> Recipient:
    """A recipient inside the vendor (lead, sales administration): the support language."""
    return Recipient(address, "", settings.support.language)
