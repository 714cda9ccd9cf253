"""An agent's answer on a case: it goes to the main contact and the distribution list, as
the agent wrote it, with the agent's files, signed once with the agent's name, and moves
the case as its status tag says (`TAGS`). Never commits.

Only a proven agent gets here (see confirmation.py); `[NOTE]` is note.py, and a `[CLOS]`
with nothing else to say is close.py.
"""
from __future__ import annotations

from gateway import cases, timeline
from gateway.models import Disposition
from gateway.outbound.outbox import HUMAN
from gateway.pipeline.work import Outcome, Work, case_recipients

# The agent's tag and the move it makes; no tag is an answer (en_cours, or a closed case
# stays closed).
TAGS = (("closed", cases.Move.CLOSE), ("resolved", cases.Move.RESOLVE), ("waiting", cases.Move.WAIT))


def apply(work: Work) -> Outcome:
    case = work.case
    assert case is not None
    text = work.request.body()
    by = next((move for tag, move in TAGS if tag in work.request.flags), cases.Move.ANSWER)
    files = work.files(case, work.event(case, "agent_message", text))
    change = cases.move(case, by, work.now)
    if change.changed:
        work.event(case, "status_change", timeline.status_change(change.before, change.after))
    if case.first_agent_at is None:
        case.first_agent_at = work.now
    to, cc = case_recipients(case)
    work.outbox.post("agent_message", to, cc, case=case, files=files, auto_submitted=HUMAN, context={
        "agent_name": _signature(work.sender.name or work.sender.address or "", text), "text": text,
        "status_changed": change.changed})
    reasons = ("agent answer sent",) + ((f"status {change.after}",) if change.changed else ())
    return Outcome(Disposition.APPENDED, reasons, case.id)


def _signature(name: str, text: str) -> str:
    """The agent's name to sign the answer with, or "" when the answer already ends with it:
    the customer reads the name once."""
    ending = "\n".join(text.strip().splitlines()[-4:]).casefold()
    return "" if name and name.casefold() in ending else name
