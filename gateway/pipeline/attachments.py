"""Keep a message's attachments on its case, with their size and SHA-256. Never commits."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import insert
from sqlalchemy.orm import Session

from gateway.models import Attachment, Case
from gateway.outbound.outbox import StoredFile
from gateway.pipeline.parse import Attachment as ParsedAttachment


def store_attachments(session: Session, case: Case, event_id: int,
                      attachments: Iterable[ParsedAttachment]) -> list[StoredFile]:
    """Store the files on the case's event; what the outbox needs to carry them along."""
    rows = [dict(case_id=case.id, event_id=event_id, filename=att.filename[:255],
                 content_type=att.content_type[:255], size=len(att.data),
                 sha256=hashlib.sha256(att.data).hexdigest(), data=att.data, inline=att.inline)
            for att in attachments]
    if not rows:
        return []
    ids = session.scalars(insert(Attachment).returning(Attachment.id, sort_by_parameter_order=True), rows)
    return [StoredFile(i, r["filename"], r["content_type"], r["size"], r["inline"])
            for i, r in zip(ids, rows)]
