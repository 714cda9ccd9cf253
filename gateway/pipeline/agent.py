"""An agent's message on a case: an answer to the customer, a status change, or a note.

`[ATTENTE]`, `[RESOLU]` and `[CLOS]` set the status; `[NOTE]` keeps the text as an internal
note that no customer ever sees. Never commits.
"""
from __future__ import annotations

from gateway import timeline
from gateway.models import Case, Disposition, Status
from gateway.outbound.outbox import HUMAN
from gateway.pipeline.attachments import store_attachments
from gateway.pipeline.follow_up import close
from gateway.pipeline.work import Outcome, Problem, Work, case_recipients

TARGET = {"waiting": Status.WAITING, "resolved": Status.RESOLVED, "closed": Status.CLOSED}


def agent_message(work: Work, case: Case | None) -> Outcome:
    if case is None:
        if work.request.case_number is not None:
            return work.no_access()
        return work.refuse([Problem("agent_needs_case")])
    flags, text, now = work.request.flags, work.request.body(), work.now
    if "note" in flags:
        event = work.event(case, "note", text, internal=True)
        store_attachments(work.session, case, event, work.parsed.attachments)
        case.updated_at = now
        return Outcome(Disposition.APPENDED, ("internal note",), case.id)
    target = next((TARGET[f] for f in ("closed", "resolved", "waiting") if f in flags), None)
    if target == Status.CLOSED and not text.strip() and not work.parsed.attachments:
        return close(work, case, closed_by="agent")
    if not text.strip() and not work.parsed.attachments and target is None:
        return work.refuse([Problem("empty_message")], case=case)
    new_status = target or (case.status if case.status == Status.CLOSED else Status.IN_PROGRESS)
    changed = new_status != case.status
    event = work.event(case, "agent_message", text)
    files = store_attachments(work.session, case, event, work.parsed.attachments)
    if changed:
        work.event(case, "status_change", timeline.status_change(case.status, new_status))
        case.status = new_status
        case.waiting_since = now if new_status == Status.WAITING else None
        case.closed_at = now if new_status == Status.CLOSED else None
    if case.first_agent_at is None:
        case.first_agent_at = now
    case.updated_at = now
    to, cc = case_recipients(case)
    work.outbox.post("agent_message", to, cc, case=case, files=files, auto_submitted=HUMAN, context={
        "agent_name": _signature(work.sender.name or work.sender.address or "", text), "text": text,
        "status_changed": changed})
    return Outcome(Disposition.APPENDED, ("agent answer sent",) + ((f"status {new_status}",) if changed else ()), case.id)


def _signature(name: str, text: str) -> str:
    """The agent's name to sign the answer with, or "" when the answer already ends with it:
    the customer reads the name once."""
    ending = "\n".join(text.strip().splitlines()[-4:]).casefold()
    return "" if name and name.casefold() in ending else name
