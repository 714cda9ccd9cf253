"""Held-back notices go out as one digest per recipient once their window has ended.

A recipient who had their share of notices about one case, or about one author's
messages (`[support] notices_per_window` per `notice_window_minutes`), gets the rest
later in a single mail that carries each of them whole, files included: a flood or a
mail loop is slowed to one mail per window, and nothing is dropped; notices about priority
cases come first in the digest. Runs before every
outbox drain. Commits its own transaction.
"""
from __future__ import annotations

import datetime as dt
from itertools import groupby

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.models import (
    DELIVERY_HELD_BACK,
    DELIVERY_MERGED,
    Attachment,
    Case,
    Contact,
    Delivery,
    OutboundFile,
    OutboundMessage,
)
from gateway.outbound.outbox import AUTO_GENERATED, Outbox, Recipient, StoredFile


def flush(engine: Engine, settings: Settings, now: dt.datetime | None = None) -> int:
    """Merge every due held-back notice into one digest per recipient; how many digests."""
    now = now or utcnow()
    with session_scope(engine) as session:
        # One statement takes them: two senders flushing at once never send a notice twice.
        taken = session.execute(
            update(Delivery).where(Delivery.status == DELIVERY_HELD_BACK, Delivery.next_attempt_at <= now)
            .values(status=DELIVERY_MERGED, sent_at=now).returning(Delivery.recipient, Delivery.message_id)
            .execution_options(synchronize_session=False)).all()
        outbox = Outbox(session, settings, now)
        by_recipient = groupby(sorted(taken), key=lambda row: row[0])
        for address, rows in by_recipient:
            ids = sorted({message_id for _, message_id in rows})
            # Notices about priority cases come first, then the others in their order.
            notices = list(session.scalars(
                select(OutboundMessage).outerjoin(Case, Case.id == OutboundMessage.case_id)
                .where(OutboundMessage.id.in_(ids))
                .order_by(func.coalesce(Case.priority, False).desc(), OutboundMessage.id)))
            outbox.post("notice_digest", [Recipient(address, "", _language(session, settings, address))],
                        context={"notices": notices, "window": settings.support.notice_window_minutes},
                        auto_submitted=AUTO_GENERATED, files=_files(session, ids))
        return len({address for address, _ in taken})


def _language(session: Session, settings: Settings, address: str) -> str:
    """The recipient's language: a contact's own or their client's; agents get the support's."""
    contact = session.scalars(select(Contact).where(Contact.email == address).limit(1)).first()
    if contact is not None:
        return contact.language or contact.client.language or settings.support.language
    return settings.support.language


def _files(session: Session, message_ids: list[int]) -> list[StoredFile]:
    """The files the held notices carried, once each: the digest carries them in turn."""
    rows = session.execute(
        select(Attachment.id, Attachment.filename, Attachment.content_type, Attachment.size, Attachment.inline)
        .join(OutboundFile, OutboundFile.attachment_id == Attachment.id)
        .where(OutboundFile.message_id.in_(message_ids)).order_by(OutboundFile.id))
    seen: dict[int, StoredFile] = {}
    for row in rows:
        seen.setdefault(row.id, StoredFile(row.id, row.filename, row.content_type, row.size, row.inline))
    return list(seen.values())

