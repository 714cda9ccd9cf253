"""`[SUIVI]`: the sender's client's cases at a glance, or one case's timeline.

Only the cases of the clients the sender is an active contact of; a stranger, or a
contact asking for another client's case, learns nothing. Internal notes never appear.
Never commits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import joinedload

from gateway import bounds
from gateway.models import Attachment, Case, CaseEvent, Disposition, Status
from gateway.pipeline.work import Outcome, Problem, Work

LIST_LIMIT = 50      # cases shown per section; the answer says how many more there are
EVENTS_LIMIT = 30    # newest events shown in one case's detail
_NUMBER = re.compile(r"#?\s*(\d{1,12})")


@dataclass(frozen=True)
class CaseLine:
    number: int
    title: str
    status: str
    criticality: int
    priority: bool
    last_action: str
    last_action_at: object
    product: str = ""          # the licence's product
    module: str | None = None
    main_contact: str = ""     # the main contact's name, else address


def apply(work: Work) -> Outcome:
    """Answer a `[SUIVI]` request: one case when named, else the list the value asks for."""
    case = work.case
    value = work.request.command_values.get("follow", "").strip()
    m = _NUMBER.fullmatch(value)
    if m or (case is not None and not value):
        number = int(m.group(1)) if m else case.id  # type: ignore[union-attr]
        return _one_case(work, number)
    scope = value.upper() if value.upper() in ("CLOS", "TOUS", "CLOSED", "ALL") else "OPEN"
    return _list(work, scope)


def _clients(work: Work) -> list[int]:
    return [c.client_id for c in work.sender.contacts]


def _list(work: Work, scope: str) -> Outcome:
    clients = _clients(work)
    if not clients:
        return work.refuse([Problem("follow_unknown_sender")])
    show_open = scope in ("OPEN", "TOUS", "ALL")
    show_closed = scope in ("CLOS", "CLOSED", "TOUS", "ALL")
    sections = {}
    for name, wanted, condition in (("open", show_open, Case.status != Status.CLOSED),
                                    ("closed", show_closed, Case.status == Status.CLOSED)):
        if wanted:
            sections[name] = _section(work, clients, condition)
    work.outbox.post("follow_list", [work.sender_recipient()], context={  # type: ignore[list-item]
        "scope": scope, "sections": sections, "limit": LIST_LIMIT}, include_author=True)
    total = sum(s[1] for s in sections.values())
    return Outcome(Disposition.APPENDED, (f"follow-up list sent: {total} case(s)",))


def _section(work: Work, clients: list[int], condition: ColumnElement[bool]) -> tuple[list[CaseLine], int]:
    session = work.session
    where = (Case.client_id.in_(clients), condition)
    total = session.scalar(select(func.count()).select_from(Case).where(*where)) or 0
    cases = list(session.scalars(select(Case).where(*where)
                                 .options(joinedload(Case.licence), joinedload(Case.main_contact))
                                 .order_by(Case.updated_at.desc(), Case.id.desc()).limit(LIST_LIMIT)))
    last = _last_events(work, [c.id for c in cases])
    lines = [CaseLine(c.id, c.title, c.status, c.criticality, c.priority,
                      last[c.id].kind if c.id in last else "opened",
                      last[c.id].at if c.id in last else c.opened_at,
                      c.licence.product, c.module, c.main_contact.name or c.main_contact.email)
             for c in cases]
    return lines, total


def _last_events(work: Work, case_ids: list[int]) -> dict[int, CaseEvent]:
    if not case_ids:
        return {}
    newest = (select(func.max(CaseEvent.id)).where(CaseEvent.case_id.in_(case_ids),
                                                  CaseEvent.internal.is_(False))
              .group_by(CaseEvent.case_id))
    return {e.case_id: e for e in work.session.scalars(select(CaseEvent).where(CaseEvent.id.in_(newest)))}


def _one_case(work: Work, number: int) -> Outcome:
    case = work.session.get(Case, number) if bounds.is_case_number(number) else None
    if case is None or case.client_id not in _clients(work):
        return work.refuse([Problem("case_not_found", {"number": number})])
    events = list(work.session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.internal.is_(False))
        .order_by(CaseEvent.id.desc()).limit(EVENTS_LIMIT)))[::-1]
    names: dict[int | None, list[str]] = {}
    for event_id, filename in work.session.execute(
            select(Attachment.event_id, Attachment.filename).where(Attachment.case_id == case.id)):
        names.setdefault(event_id, []).append(filename)
    timeline = [{"event": e, "attachments": names.get(e.id, [])} for e in events]
    work.outbox.post("follow_case", [work.sender_recipient()], case=case,  # type: ignore[list-item]
                     context={"timeline": timeline, "limit": EVENTS_LIMIT}, include_author=True)
    return Outcome(Disposition.APPENDED, (f"case {case.id} details sent",), case.id)
