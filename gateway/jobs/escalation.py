"""Escalation: a case that no agent has answered within its criticality's delay
(`sla.first_response_hours`, counted in hours from its opening) is escalated once to
`support.lead_address` (none when it is empty). Closed cases are not escalated; a criticality without a delay
never is. The timeline gets an internal event (customers never see it). Never commits.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import timeline
from gateway.config import Settings
from gateway.jobs.clock import Clock
from gateway.jobs.common import Item, Job, add_event, lock_case, post, staff
from gateway.models import Case, CaseEvent, Escalation, Status


def due_at(settings: Settings, case: Case) -> dt.datetime | None:
    hours = settings.sla.first_response_hours.get(case.criticality)
    return case.opened_at + dt.timedelta(hours=hours) if hours is not None else None


def find(settings: Settings, session: Session, at: dt.datetime) -> list[Item]:
    if not settings.support.lead_address:
        return []
    cases = session.scalars(
        select(Case).outerjoin(Escalation, Escalation.case_id == Case.id)
        .where(Case.first_agent_at.is_(None), Case.status != Status.CLOSED, Escalation.id.is_(None))
        .order_by(Case.id))
    return [Item(c.id, "escalation") for c in cases if (due := due_at(settings, c)) is not None and due <= at]


def act(settings: Settings, session: Session, clock: Clock, case_id: int) -> str | None:
    """Escalate one unanswered case; None if an agent answered or it was escalated meanwhile."""
    case = lock_case(session, case_id)
    if case is None or case.first_agent_at is not None or case.status == Status.CLOSED:
        return None
    due = due_at(settings, case)
    done = session.scalar(select(Escalation.id).where(Escalation.case_id == case_id))
    if due is None or due > clock.at or done is not None:
        return None
    # The unique row per case is written first: a second gateway fails here.
    session.add(Escalation(case_id=case.id, due_at=due, at=clock.at))
    session.flush()
    lead, now = settings.support.lead_address, clock.now
    hours = settings.sla.first_response_hours[case.criticality]
    add_event(session, settings, now, case, "escalation", timeline.escalated(lead, hours), internal=True)
    details = session.scalar(select(CaseEvent.text).where(
        CaseEvent.case_id == case.id, CaseEvent.kind == "opened").order_by(CaseEvent.id).limit(1))
    post(session, settings, now, "escalation", [staff(settings, lead)], case=case, context={
        "hours": hours, "opened_at": case.opened_at,
        # How long the case has waited when the lead reads this, whatever the job's clock said.
        "waited_hours": max(0, int((now - case.opened_at).total_seconds() // 3600)),
        "details": timeline.person_text("opened", details or "")})
    return "escalation"


JOB = Job("escalation", find, act)
