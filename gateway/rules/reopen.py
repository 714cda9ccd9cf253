"""A customer's message on a case closed longer ago than `cases.reopen_days`: it stays
closed, and the customer is told to open a new case. Never commits.
"""
from __future__ import annotations

import datetime as dt

from gateway.models import Status
from gateway.pipeline.work import Outcome, Problem, Work


def too_late(work: Work) -> bool:
    case = work.case
    limit = dt.timedelta(days=work.settings.cases.reopen_days)
    return (case is not None and case.status == Status.CLOSED and case.closed_at is not None
            and work.now - case.closed_at > limit)


def apply(work: Work) -> Outcome:
    days = work.settings.cases.reopen_days
    return work.refuse([Problem("case_closed_too_long", {"days": days})], case=work.case)
