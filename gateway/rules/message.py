"""A customer's message on a case: the information is added, and everyone else on the case
is told (main contact, distribution list, agents), with its files.

A message on a case that waits for the customer, is resolved or is closed (within
`cases.reopen_days`) brings it back: `cases.move` says where. Never commits.
"""
from __future__ import annotations

from gateway import cases
from gateway.models import Case, Disposition, Status
from gateway.outbound.outbox import NOTICE
from gateway.pipeline.work import Outcome, Work, case_recipients


def resume(work: Work, case: Case) -> bool:
    """The case back in hand after a customer's message; whether it was reopened."""
    reopened = case.status in (Status.CLOSED, Status.RESOLVED)
    if reopened:
        # The kind and the author say it all: a mail puts it in the reader's words.
        work.event(case, "reopened", "")
    cases.move(case, cases.Move.CUSTOMER, work.now)
    return reopened


def apply(work: Work, used: tuple[str, ...] = ("priority",)) -> Outcome:
    """`used`: the fields whose lines the message acted on (a handover's, a change's), taken
    out of the text; every other line stays as written."""
    case = work.case
    assert case is not None
    reopened = resume(work, case)
    text = work.request.body(used)
    files = work.files(case, work.event(case, "customer_message", text))
    context = {"author": work.sender, "text": text, "reopened": reopened}
    to, cc = case_recipients(case)
    work.outbox.post("case_message", to, cc, case=case, context=context, files=files, audience=NOTICE)
    work.outbox.post("case_message", work.agents(),
                     case=case, context=dict(context, for_agents=True), files=files, audience=NOTICE)
    return Outcome(Disposition.APPENDED, ("information added",) + (("case reopened",) if reopened else ()), case.id)
