"""`[CLOTURE]` on a case (a customer's `[CLOS]` too), and an agent's `[CLOS]` with nothing
else to say: the case is closed and everyone on it is told, the person who closed it
included. Never commits.
"""
from __future__ import annotations

from gateway import cases
from gateway.models import Disposition, Status
from gateway.outbound.outbox import NOTICE
from gateway.pipeline.work import Outcome, Problem, Work, case_recipients


def apply(work: Work) -> Outcome:
    return close(work, "customer")


def by_agent(work: Work) -> Outcome:
    return close(work, "agent")


def close(work: Work, closed_by: str) -> Outcome:
    case = work.case
    assert case is not None
    if case.status == Status.CLOSED:
        return work.refuse([Problem("already_closed")], case=case)
    cases.move(case, cases.Move.CLOSE, work.now)
    text = work.request.body()
    files = work.files(case, work.event(case, "closed", text))  # the closing words as written, if any
    to, cc = case_recipients(case)
    context = {"closed_by": closed_by, "author_name": work.sender.name or work.sender.address or "", "text": text}
    work.outbox.post("case_closed", to, cc, case=case, context=context, include_author=True, files=files,
                     audience=NOTICE)
    if closed_by == "customer":
        work.outbox.post("case_closed", work.agents(),
                         case=case, context=dict(context, for_agents=True), files=files, audience=NOTICE)
    return Outcome(Disposition.APPENDED, (f"case closed by the {closed_by}",), case.id)
