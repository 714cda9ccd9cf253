"""Keep a message's attachments on its case, with their size and SHA-256. Never commits."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy.orm import Session

from gateway.models import Attachment, Case, CaseEvent
from gateway.pipeline.parse import Attachment as ParsedAttachment


def store_attachments(session: Session, case: Case, event: CaseEvent,
                      attachments: Iterable[ParsedAttachment]) -> int:
    count = 0
    for att in attachments:
        session.add(Attachment(case_id=case.id, event_id=event.id, filename=att.filename[:255],
                               content_type=att.content_type[:255], size=len(att.data),
                               sha256=hashlib.sha256(att.data).hexdigest(), data=att.data))
        count += 1
    return count
