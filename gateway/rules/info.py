"""`[INFO]` on a case: a request for information, flagged to the agents and acknowledged to
the customer. Never commits.
"""
from __future__ import annotations

from gateway.models import Disposition
from gateway.outbound.outbox import NOTICE
from gateway.pipeline.work import Outcome, Work
from gateway.rules.message import resume


def apply(work: Work, used: tuple[str, ...] = ("priority",)) -> Outcome:
    case = work.case
    assert case is not None
    resume(work, case)
    text = work.request.body(used)
    files = work.files(case, work.event(case, "info_request", text))
    me = work.sender_recipient()
    assert me is not None
    work.outbox.post("info_ack", [me], case=case, context={"text": text}, include_author=True)
    work.outbox.post("agent_info_request", work.agents(),
                     case=case, context={"author": work.sender, "text": text}, files=files, audience=NOTICE)
    return Outcome(Disposition.APPENDED, ("information request recorded",), case.id)
