"""Read-only views for the operator's commands, as plain dicts ready for JSON or a table."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.jobs import record as jobs_record
from gateway.models import (
    DELIVERY_FAILED,
    DELIVERY_HELD_BACK,
    DELIVERY_PENDING,
    Attachment,
    Case,
    CaseEvent,
    Client,
    Contact,
    Delivery,
    Disposition,
    InboundMessage,
    OutboundMessage,
    Status,
)


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value else None


def cases_list(session: Session, status: str | None = None, client: str | None = None) -> list[dict[str, Any]]:
    query = select(Case).join(Client, Case.client_id == Client.id).order_by(Case.id)
    if status:
        query = query.where(Case.status == status)
    if client:
        query = query.where(Client.code == client)
    return [{"number": c.id, "status": c.status, "client": c.client.code, "serial": c.licence.serial,
             "title": c.title, "criticality": c.criticality, "priority": c.priority,
             "updated_at": _iso(c.updated_at)} for c in session.scalars(query)]


def case_detail(session: Session, number: int) -> dict[str, Any] | None:
    case = session.get(Case, number)
    if case is None:
        return None
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == number).order_by(CaseEvent.id))
    attachments = session.execute(select(Attachment.filename, Attachment.size, Attachment.sha256)
                                  .where(Attachment.case_id == number).order_by(Attachment.id))
    return {
        "number": case.id, "status": case.status, "client": case.client.code,
        "serial": case.licence.serial, "module": case.module, "criticality": case.criticality,
        "priority": case.priority, "title": case.title, "main_contact": case.main_contact.email,
        "distribution_list": [e.contact.email for e in case.distribution],
        "events": [{"kind": e.kind, "author": e.author, "at": _iso(e.at), "text": e.text,
                    "internal": e.internal} for e in events],
        "attachments": [{"filename": f, "size": s, "sha256": h} for f, s, h in attachments],
    }


def inbound_list(session: Session, held: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
    query = select(InboundMessage.id, InboundMessage.received_at, InboundMessage.message_id,
                   InboundMessage.sender, InboundMessage.subject, InboundMessage.outcome,
                   InboundMessage.case_id, InboundMessage.reasons).order_by(InboundMessage.id.desc())
    if held:
        query = query.where(InboundMessage.outcome == Disposition.HELD)
    rows = session.execute(query.limit(limit)).all()
    return [{"id": r.id, "received_at": _iso(r.received_at), "message_id": r.message_id,
             "sender": r.sender, "subject": r.subject, "outcome": r.outcome, "case": r.case_id,
             "reasons": r.reasons} for r in reversed(rows)]


def outbox_list(session: Session, failed: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
    query = (select(Delivery.id, Delivery.recipient, Delivery.status, Delivery.attempts,
                    Delivery.next_attempt_at, Delivery.last_error, OutboundMessage.kind,
                    OutboundMessage.subject, OutboundMessage.case_id)
             .join(OutboundMessage).order_by(Delivery.id.desc()))
    if failed:
        query = query.where(Delivery.status == DELIVERY_FAILED)
    rows = session.execute(query.limit(limit)).all()
    return [{"id": r.id, "recipient": r.recipient, "status": r.status, "attempts": r.attempts,
             "next_attempt_at": _iso(r.next_attempt_at), "last_error": r.last_error, "kind": r.kind,
             "subject": r.subject, "case": r.case_id} for r in reversed(rows)]


def status(session: Session) -> dict[str, Any]:
    def count(model: Any, *where: Any) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0
    last_errors = session.execute(
        select(InboundMessage.id, InboundMessage.reasons).where(InboundMessage.outcome == Disposition.HELD)
        .order_by(InboundMessage.id.desc()).limit(5)).all()
    last_failures = session.execute(
        select(Delivery.id, Delivery.recipient, Delivery.last_error)
        .where(Delivery.last_error.is_not(None)).order_by(Delivery.id.desc()).limit(5)).all()
    return {
        "inbound_pending": count(InboundMessage, InboundMessage.outcome == Disposition.PENDING),
        "inbound_held": count(InboundMessage, InboundMessage.outcome == Disposition.HELD),
        "outbox_pending": count(Delivery, Delivery.status == DELIVERY_PENDING),
        "outbox_retrying": count(Delivery, Delivery.status == DELIVERY_PENDING, Delivery.attempts > 0),
        "outbox_failed": count(Delivery, Delivery.status == DELIVERY_FAILED),
        "outbox_held_back": count(Delivery, Delivery.status == DELIVERY_HELD_BACK),
        "failing_contacts": count(Contact, Contact.failing_since.is_not(None)),
        "open_cases": count(Case, Case.status != Status.CLOSED),
        "last_held": [{"id": i, "reasons": r} for i, r in last_errors],
        "last_delivery_errors": [{"id": i, "recipient": a, "error": e} for i, a, e in last_failures],
        "jobs": jobs_record.report(session),
    }


def attachments_list(session: Session, number: int) -> list[dict[str, Any]] | None:
    """The files kept on a case, with the event that brought each; None when no such case."""
    if session.get(Case, number) is None:
        return None
    rows = session.execute(
        select(Attachment.id, Attachment.filename, Attachment.content_type, Attachment.size,
               Attachment.sha256, Attachment.inline, CaseEvent.kind, CaseEvent.author, CaseEvent.at,
               CaseEvent.internal)
        .join(CaseEvent, Attachment.event_id == CaseEvent.id, isouter=True)
        .where(Attachment.case_id == number).order_by(Attachment.id))
    return [{"id": r.id, "filename": r.filename, "content_type": r.content_type, "size": r.size,
             "sha256": r.sha256, "inline": r.inline, "event": r.kind, "author": r.author,
             "at": _iso(r.at), "internal": bool(r.internal)} for r in rows]


def attachment_data(session: Session, number: int, file_id: int) -> tuple[str, bytes] | None:
    """(filename, bytes) of one file of a case, or None when the case has no such file."""
    row = session.execute(select(Attachment.filename, Attachment.data).where(
        Attachment.id == file_id, Attachment.case_id == number)).first()
    return (row.filename, row.data) if row is not None else None
