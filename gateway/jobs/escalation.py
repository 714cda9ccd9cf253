"""Escalation: a case that no agent has answered within its first-response delay is
escalated once to `support.lead_address` (none when it is empty). The delay is its
criticality's (`sla.first_response_hours`), counted from its opening or from the latest
change of criticality; a priority case also has `sla.priority_first_response_hours`,
counted from when it got priority, and the earlier of the two deadlines holds. Closed cases
are not escalated; a criticality without a delay never is (unless the case has priority).
Priority cases come first. The timeline gets an internal event (customers never see it).
Never commits.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import timeline
from gateway.config import Settings
from gateway.jobs.clock import Clock
from gateway.jobs.common import Item, Job, add_event, lock_case, post, staff
from gateway.models import Case, CaseEvent, Escalation, Status


@dataclass(frozen=True)
class Deadline:
    due: dt.datetime
    hours: int
    since: dt.datetime     # when the delay started: opening, criticality change, or priority
    reason: str            # "criticality" or "priority"


def deadline(settings: Settings, case: Case) -> Deadline | None:
    """When the case must have had an agent's answer, and by which delay; None if never."""
    found = []
    hours = settings.sla.first_response_hours.get(case.criticality)
    if hours is not None:
        since = case.criticality_changed_at or case.opened_at
        found.append(Deadline(since + dt.timedelta(hours=hours), hours, since, "criticality"))
    if case.priority and settings.sla.priority_first_response_hours > 0:
        hours, since = settings.sla.priority_first_response_hours, case.priority_since or case.opened_at
        found.append(Deadline(since + dt.timedelta(hours=hours), hours, since, "priority"))
    return min(found, key=lambda d: d.due, default=None)


def due_at(settings: Settings, case: Case) -> dt.datetime | None:
    found = deadline(settings, case)
    return found.due if found is not None else None


def find(settings: Settings, session: Session, at: dt.datetime) -> list[Item]:
    if not settings.support.lead_address:
        return []
    cases = session.scalars(
        select(Case).outerjoin(Escalation, Escalation.case_id == Case.id)
        .where(Case.first_agent_at.is_(None), Case.status != Status.CLOSED, Escalation.id.is_(None))
        .order_by(Case.priority.desc(), Case.id))
    return [Item(c.id, "escalation") for c in cases if (due := due_at(settings, c)) is not None and due <= at]


def act(settings: Settings, session: Session, clock: Clock, case_id: int) -> str | None:
    """Escalate one unanswered case; None if an agent answered or it was escalated meanwhile."""
    case = lock_case(session, case_id)
    if case is None or case.first_agent_at is not None or case.status == Status.CLOSED:
        return None
    found = deadline(settings, case)
    done = session.scalar(select(Escalation.id).where(Escalation.case_id == case_id))
    if found is None or found.due > clock.at or done is not None:
        return None
    # The unique row per case is written first: a second gateway fails here.
    session.add(Escalation(case_id=case.id, due_at=found.due, at=clock.at))
    session.flush()
    lead, now = settings.support.lead_address, clock.now
    add_event(session, settings, now, case, "escalation", timeline.escalated(lead, found.hours), internal=True)
    details = session.scalar(select(CaseEvent.text).where(
        CaseEvent.case_id == case.id, CaseEvent.kind == "opened").order_by(CaseEvent.id).limit(1))
    post(session, settings, now, "escalation", [staff(settings, lead)], case=case, context={
        "hours": found.hours, "opened_at": case.opened_at, "reason": found.reason,
        "changed_at": case.criticality_changed_at,
        # How long the case has waited when the lead reads this, whatever the job's clock said.
        "waited_hours": max(0, int((now - case.opened_at).total_seconds() // 3600)),
        "details": timeline.person_text("opened", details or "")})
    return "escalation"


JOB = Job("escalation", find, act)
