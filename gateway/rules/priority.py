"""`[PRIORITE]`: one point of a privilege or excellence contract buys a case priority.

`grant` is used when a case opens with the tag and by `apply`, the tag on an open case.
The debit is one conditional UPDATE (points > 0), so two requests at the same moment can
never take the balance below zero, and the ledger's unique case column refuses a second
debit for the same case. Never commits.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway import timeline
from gateway.models import Case, CaseEvent, Client, Contract, Disposition, PointsEntry
from gateway.outbound.outbox import NOTICE
from gateway.pipeline.work import Outcome, Work
from gateway.rules import info, message

ELIGIBLE_LEVELS = ("privilege", "excellence")


@dataclass(frozen=True)
class PriorityResult:
    status: str  # granted, already, not_eligible, no_points
    points_left: int


def apply(work: Work, used: tuple[str, ...] = ("priority",)) -> Outcome:
    """Priority on an open case, confirmed to the sender; what else the message says (text,
    files, [INFO]) is then added as any message is."""
    case = work.case
    assert case is not None
    result = grant(work, case, case.client)
    me = work.sender_recipient()
    assert me is not None
    work.outbox.post("priority_result", [me], case=case, context={"priority": result}, include_author=True)
    if result.status == "granted":
        # Support sees a case that becomes a priority as it sees a new case.
        work.outbox.post("agent_case_changed", work.agents(), case=case, audience=NOTICE, context={
            "changes": [{"field": "priority", "before": False, "after": True}], "author": work.sender,
            "details": opening_text(work), "priority": result})
    if work.request.body(used) or work.parsed.attachments:
        return (info.apply if "info" in work.request.flags else message.apply)(work, used=used)
    return Outcome(Disposition.APPENDED, (f"priority: {result.status}",), case.id)


def grant(work: Work, case: Case, client: Client) -> PriorityResult:
    """Grant priority to `case` by debiting one point, or say why not."""
    session = work.session
    contract = session.scalar(select(Contract).where(Contract.client_id == client.id))
    if case.priority:
        return PriorityResult("already", contract.points if contract else 0)
    if contract is None or contract.level not in ELIGIBLE_LEVELS:
        return PriorityResult("not_eligible", contract.points if contract else 0)
    try:
        with session.begin_nested():
            debited = session.execute(
                update(Contract).where(Contract.id == contract.id, Contract.points > 0)
                .values(points=Contract.points - 1).returning(Contract.points)).scalar()
            if debited is None:
                raise _NoPoints
            session.add(PointsEntry(contract_id=contract.id, delta=-1, balance=debited,
                                    reason=f"priority for case {case.id}", debit_case_id=case.id,
                                    at=work.now))
    except _NoPoints:
        session.refresh(contract)
        return PriorityResult("no_points", contract.points)
    except IntegrityError:
        session.refresh(contract)
        return PriorityResult("already", contract.points)
    session.refresh(contract)
    case.priority, case.priority_since = True, work.now
    work.event(case, "priority", timeline.priority_granted(contract.points))
    return PriorityResult("granted", contract.points)


def opening_text(work: Work) -> str:
    """The customer's description of the case, for the agents' announcements."""
    case = work.case
    assert case is not None
    text = work.session.scalar(select(CaseEvent.text).where(
        CaseEvent.case_id == case.id, CaseEvent.kind == "opened").order_by(CaseEvent.id).limit(1))
    return timeline.person_text("opened", text or "")


class _NoPoints(Exception):
    """No point left: roll the savepoint back."""
