"""Reminders: a case waiting for the customer (attente_client) is reminded after
`reminders.first_after_days`, then every `reminders.interval_days` up to `reminders.max`
times; `reminders.autoclose_after_days` after the last one it is closed with a notice.

The wait starts at the agent's latest answer on the case (or when it was set waiting). A
customer's message ends the wait (the pipeline puts the case back to en_cours); an agent's
new answer starts a new one, from reminder 1. An auto-reply (out-of-office) is ignored by
the pipeline, so it neither resets nor pauses the wait. Each delay counts from the step
before it really happened, so a gateway that was down sends one reminder when it comes
back, not all of them at once. Never commits.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from gateway import cases, timeline
from gateway.config import Settings
from gateway.jobs.clock import Clock
from gateway.jobs.common import Item, Job, add_events, later, local, lock_cases, recipients
from gateway.jobs.mailing import Mailing
from gateway.models import Case, CaseEvent, Reminder, Status
from gateway.outbound.outbox import Recipient

People = tuple[list[Recipient], list[Recipient]]  # To, Cc


@dataclass(frozen=True)
class Wait:
    since: dt.datetime                  # the start of the wait: the reminders' period
    sent: tuple[dt.datetime, ...]       # when reminders 1, 2 ... of this wait were sent


@dataclass(frozen=True)
class Step:
    action: str                         # "reminder" or "close"
    number: int                         # the reminder's number; for "close", how many were sent
    due: dt.datetime


def next_step(settings: Settings, wait: Wait) -> Step | None:
    """What comes next for a wait, and when; None when nothing ever will (no auto-close)."""
    r = settings.reminders
    sent = len(wait.sent)
    last = wait.sent[-1] if wait.sent else wait.since
    if sent < r.max:
        days = r.interval_days if sent else r.first_after_days
        return Step("reminder", sent + 1, later(settings, last, days))
    if r.autoclose_after_days <= 0:
        return None
    return Step("close", sent, later(settings, last, r.autoclose_after_days))


def waits(session: Session, *where: Any) -> dict[int, Wait]:
    """The waiting cases (those matching `where`) and their waits."""
    rows = session.execute(
        select(Case.id, Case.waiting_since, Case.updated_at, func.max(CaseEvent.at))
        .outerjoin(CaseEvent, (CaseEvent.case_id == Case.id) & (CaseEvent.kind == "agent_message"))
        .where(Case.status == Status.WAITING, *where).group_by(Case.id, Case.waiting_since, Case.updated_at)
        .order_by(Case.id)).all()
    since = {i: max((t for t in (waiting, answered) if t is not None), default=updated)
             for i, waiting, updated, answered in rows}
    sent: dict[int, list[dt.datetime]] = {i: [] for i in since}
    if since:
        for case_id, period, at in session.execute(
                select(Reminder.case_id, Reminder.period, Reminder.at).join(Case, Reminder.case_id == Case.id)
                .where(Case.status == Status.WAITING, *where).order_by(Reminder.case_id, Reminder.number)):
            if period == since[case_id]:
                sent[case_id].append(at)
    return {i: Wait(since[i], tuple(sent[i])) for i in since}


def find(settings: Settings, session: Session, at: dt.datetime) -> list[Item]:
    """What is due, priority cases first."""
    due = ((i, next_step(settings, w)) for i, w in waits(session).items())
    items = [Item(i, step.action) for i, step in due if step is not None and step.due <= at]
    first = set(session.scalars(select(Case.id).where(Case.status == Status.WAITING, Case.priority.is_(True))))
    return sorted(items, key=lambda item: item.key not in first)


DID = {"reminder": "reminder", "close": "closed"}  # what the runner counts, by step


def act(settings: Settings, session: Session, clock: Clock, case_id: int) -> str | None:
    """Send the reminder that is due on one case by the job's clock, or close it; None if
    nothing is due."""
    return act_many(settings, session, clock, [case_id]).get(case_id)


def act_many(settings: Settings, session: Session, clock: Clock, case_ids: list[int]) -> dict[int, str | None]:
    """`act` on many cases in the caller's transaction: they are locked first, then what is
    due on each is read again. Reminders and closures go out at the real time."""
    found = lock_cases(session, case_ids)
    current = waits(session, Case.id.in_(list(found))) if found else {}
    due = {i: (current[i], step) for i in case_ids if i in current
           and (step := next_step(settings, current[i])) is not None and step.due <= clock.at}
    reminded = [i for i, (_, step) in due.items() if step.action == "reminder"]
    # The unique (case, period, number) rows are written first: a second gateway fails here.
    # They are dated by the job's clock, which the next step counts from.
    if reminded:
        session.execute(insert(Reminder), [dict(case_id=i, period=due[i][0].since, number=due[i][1].number,
                                                at=clock.at) for i in reminded])
    add_events(session, settings, clock.now, [
        (i, "reminder", timeline.reminder(step.number, settings.reminders.max)) if step.action == "reminder"
        else (i, "closed", timeline.closed_no_answer(len(wait.sent))) for i, (wait, step) in due.items()])
    questions = _questions(session, reminded)
    people = recipients(session, {i: found[i] for i in due})
    mail = Mailing(session, settings, clock.now)
    for i, (wait, step) in due.items():
        if step.action == "reminder":
            _remind(settings, mail, clock.at, found[i], people[i], wait, step.number, questions.get(i))
        else:
            _close(settings, mail, clock.now, found[i], people[i], wait)
    mail.write()
    return {i: DID[due[i][1].action] if i in due else None for i in case_ids}


def _questions(session: Session, case_ids: list[int]) -> dict[int, str | None]:
    """The agent's latest message on each case (the question a reminder quotes)."""
    if not case_ids:
        return {}
    latest = (select(CaseEvent.text).where(CaseEvent.case_id == Case.id, CaseEvent.kind == "agent_message")
              .order_by(CaseEvent.at.desc(), CaseEvent.id.desc()).limit(1).correlate(Case).scalar_subquery())
    rows = session.execute(select(Case.id, latest).where(Case.id.in_(case_ids))).all()
    return {int(row[0]): str(row[1]) if row[1] is not None else None for row in rows}


def _remind(settings: Settings, mail: Mailing, at: dt.datetime, case: Case, people: People, wait: Wait,
            number: int, question: str | None) -> None:
    to, cc = people
    mail.mail("reminder", to, cc, case, {
        "number": number, "total": settings.reminders.max, "question": question or "",
        "asked_on": local(settings, wait.since).date(), "closes_on": _closes_on(settings, at, number)})


def _closes_on(settings: Settings, since: dt.datetime, number: int) -> dt.date | None:
    """The day the case will close if nobody answers, counting from this reminder's record."""
    r = settings.reminders
    if r.autoclose_after_days <= 0:
        return None
    at = since
    for _ in range(r.max - number):
        at = later(settings, at, r.interval_days)
    return local(settings, later(settings, at, r.autoclose_after_days)).date()


def _close(settings: Settings, mail: Mailing, now: dt.datetime, case: Case, people: People, wait: Wait) -> None:
    cases.move(case, cases.Move.CLOSE, now)
    to, cc = people
    mail.mail("autoclose_notice", to, cc, case, {
        "reminders": len(wait.sent), "asked_on": local(settings, wait.since).date()})


JOB = Job("reminders", find, act, act_many)
