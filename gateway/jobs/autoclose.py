"""Auto-close: a resolved (resolu) case closes itself `cases.resolved_autoclose_days` after
it was resolved, with a notice to the customer; 0 or less never closes it.

The case was resolved by the agent's latest answer or status change on it: while it stays
resolu nothing else can have changed its status (a customer's message reopens it, an
agent's answer without [RESOLU] puts it back to en_cours), and an agent who answers again
with [RESOLU] starts the delay again. Never commits.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import cases, timeline
from gateway.config import Settings
from gateway.jobs.clock import Clock
from gateway.jobs.common import Item, Job, add_event, local, lock_case, post
from gateway.models import Case, CaseEvent, Status
from gateway.pipeline.work import case_recipients


def resolved_since(session: Session, *where: Any) -> dict[int, dt.datetime]:
    """When each resolved case (matching `where`) was resolved."""
    rows = session.execute(
        select(Case.id, Case.updated_at, func.max(CaseEvent.at))
        .outerjoin(CaseEvent, (CaseEvent.case_id == Case.id)
                   & CaseEvent.kind.in_(("status_change", "agent_message")))
        .where(Case.status == Status.RESOLVED, *where).group_by(Case.id, Case.updated_at).order_by(Case.id))
    return {case_id: resolved or updated for case_id, updated, resolved in rows}


def _due(settings: Settings, since: dt.datetime) -> dt.datetime | None:
    days = settings.cases.resolved_autoclose_days
    return since + dt.timedelta(days=days) if days > 0 else None


def find(settings: Settings, session: Session, at: dt.datetime) -> list[Item]:
    return [Item(case_id, "close") for case_id, since in resolved_since(session).items()
            if (due := _due(settings, since)) is not None and due <= at]


def act(settings: Settings, session: Session, clock: Clock, case_id: int) -> str | None:
    """Close one resolved case whose delay has passed by the job's clock; None if it is no
    longer due. The case closes, and its notice goes, at the real time."""
    case = lock_case(session, case_id)
    since = resolved_since(session, Case.id == case_id).get(case_id)
    due = _due(settings, since) if since is not None else None
    if case is None or since is None or due is None or due > clock.at:
        return None
    now = clock.now
    cases.move(case, cases.Move.CLOSE, now)
    days = settings.cases.resolved_autoclose_days
    add_event(session, settings, now, case, "closed", timeline.closed_resolved(days))
    to, cc = case_recipients(case)
    post(session, settings, now, "resolved_autoclose", to, cc, case=case, context={
        "days": days, "resolved_on": local(settings, since).date()})
    return "closed"


JOB = Job("autoclose", find, act)
