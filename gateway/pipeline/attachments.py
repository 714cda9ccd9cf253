"""Keep a message's attachments on its case, with their size and SHA-256. Never commits."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import insert
from sqlalchemy.orm import Session

from gateway.models import Attachment, Case
from gateway.pipeline.parse import Attachment as ParsedAttachment


def store_attachments(session: Session, case: Case, event_id: int,
                      attachments: Iterable[ParsedAttachment]) -> int:
    rows = [dict(case_id=case.id, event_id=event_id, filename=att.filename[:255],
                 content_type=att.content_type[:255], size=len(att.data),
                 sha256=hashlib.sha256(att.data).hexdigest(), data=att.data) for att in attachments]
    if rows:
        session.execute(insert(Attachment), rows)
    return len(rows)
