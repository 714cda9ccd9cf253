"""Priority points: one point of a privilege or excellence contract buys a case priority.

The debit is one conditional UPDATE (points > 0), so two requests at the same moment can
never take the balance below zero, and the ledger's unique case column refuses a second
debit for the same case. Never commits.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gateway import timeline
from gateway.models import Case, CaseEvent, Client, Contract, PointsEntry
from gateway.pipeline.work import Work

ELIGIBLE_LEVELS = ("privilege", "excellence")


@dataclass(frozen=True)
class PriorityResult:
    status: str  # granted, already, not_eligible, no_points
    points_left: int


def request(work: Work, case: Case, client: Client) -> PriorityResult:
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
    case.priority = True
    session.add(CaseEvent(case_id=case.id, kind="priority", author=work.sender.address or "",
                          at=work.now, text=timeline.priority_granted(contract.points),
                          inbound_id=work.inbound.id))
    return PriorityResult("granted", contract.points)


class _NoPoints(Exception):
    """No point left: roll the savepoint back."""
