"""A customer's message on an existing case: add information, ask for information, close.

The sender must be an active contact of the case's client (main contact, distribution
list or colleague); anyone else is refused without learning anything about the case.
Never commits.
"""
from __future__ import annotations

import datetime as dt

from gateway.models import Case, Disposition, Status
from gateway.outbound.outbox import NOTICE
from gateway.pipeline import priority
from gateway.pipeline.route import active_agents
from gateway.pipeline.attachments import store_attachments
from gateway.pipeline.distribution import change_distribution
from gateway.pipeline.licence import refuse_inactive
from gateway.pipeline.work import Outcome, Problem, Work, agent_recipients, case_recipients


def follow_up(work: Work, case: Case) -> Outcome:
    if work.sender.contact_of(case.client_id) is None:
        return work.no_access()
    flags = work.request.flags
    if flags & {"close", "closed"}:
        return close(work, case)
    if "distribution" in work.request.fields:
        return change_distribution(work, case)
    if not case.licence.active:
        kind = "priority" if "priority" in flags else "info" if "info" in flags else "message"
        return refuse_inactive(work, case.licence, kind, case)
    if case.status == Status.CLOSED:
        limit = dt.timedelta(days=work.settings.cases.reopen_days)
        if case.closed_at is not None and work.now - case.closed_at > limit:
            return work.refuse([Problem("case_closed_too_long", {"days": work.settings.cases.reopen_days})],
                               case=case)
    text = work.request.body(("priority",))
    if "priority" in flags:
        result = priority.request(work, case, case.client)
        work.outbox.post("priority_result", [work.sender_recipient()], case=case,  # type: ignore[list-item]
                         context={"priority": result}, include_author=True)
        if not text and not work.parsed.attachments:
            return Outcome(Disposition.APPENDED, (f"priority: {result.status}",), case.id)
    if not text.strip() and not work.parsed.attachments:
        return work.refuse([Problem("empty_message")], case=case)
    reopened = case.status in (Status.CLOSED, Status.RESOLVED)
    if reopened:
        # The kind and the author say it all: a mail puts it in the reader's words.
        work.event(case, "reopened", "")
        case.closed_at = None
    if case.status in (Status.WAITING, Status.RESOLVED, Status.CLOSED):
        case.status = Status.IN_PROGRESS if case.first_agent_at else Status.NEW
    case.waiting_since = None
    case.last_customer_at = work.now
    case.updated_at = work.now
    if "info" in flags:
        return _info_request(work, case, text)
    event = work.event(case, "customer_message", text)
    files = store_attachments(work.session, case, event, work.parsed.attachments)
    context = {"author": work.sender, "text": text, "reopened": reopened}
    to, cc = case_recipients(case)
    work.outbox.post("case_message", to, cc, case=case, context=context, files=files, audience=NOTICE)
    work.outbox.post("case_message", agent_recipients(active_agents(work.session), work.settings.support.language),
                     case=case, context=dict(context, for_agents=True), files=files, audience=NOTICE)
    return Outcome(Disposition.APPENDED, ("information added",) + (("case reopened",) if reopened else ()), case.id)


def _info_request(work: Work, case: Case, text: str) -> Outcome:
    event = work.event(case, "info_request", text)
    files = store_attachments(work.session, case, event, work.parsed.attachments)
    work.outbox.post("info_ack", [work.sender_recipient()], case=case,  # type: ignore[list-item]
                     context={"text": text}, include_author=True)
    work.outbox.post("agent_info_request", agent_recipients(active_agents(work.session), work.settings.support.language),
                     case=case, context={"author": work.sender, "text": text}, files=files, audience=NOTICE)
    return Outcome(Disposition.APPENDED, ("information request recorded",), case.id)


def close(work: Work, case: Case, closed_by: str = "customer") -> Outcome:
    """Close the case and tell everyone on it, the person who closed it included."""
    if case.status == Status.CLOSED:
        return work.refuse([Problem("already_closed")], case=case)
    case.status = Status.CLOSED
    case.closed_at = case.updated_at = work.now
    case.waiting_since = None
    text = work.request.body()
    event = work.event(case, "closed", text)  # the closing words as written, if any
    files = store_attachments(work.session, case, event, work.parsed.attachments)
    to, cc = case_recipients(case)
    context = {"closed_by": closed_by, "author_name": work.sender.name or work.sender.address or "",
               "text": text}
    work.outbox.post("case_closed", to, cc, case=case, context=context, include_author=True, files=files,
                     audience=NOTICE)
    if closed_by == "customer":
        work.outbox.post("case_closed", agent_recipients(active_agents(work.session), work.settings.support.language),
                         case=case, context=dict(context, for_agents=True), files=files, audience=NOTICE)
    return Outcome(Disposition.APPENDED, (f"case closed by the {closed_by}",), case.id)
