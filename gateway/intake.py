"""Store a raw message durably and idempotently; nothing else.

Every door calls `store` and answers yes (250, exit 0, IMAP flag) only once it returns.
A second delivery of the same message (same Message-ID or, without one, the same bytes)
is stored too, so nothing is lost, but marked as a duplicate that the pipeline ignores.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from gateway.db import session_scope, utcnow
from gateway.models import IGNORED, PENDING, InboundMessage

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_ANGLE_ID = re.compile(rb"<[^<>\s]{1,900}>")


@dataclass(frozen=True)
class Stored:
    id: int
    duplicate: bool


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID of the header block, read without parsing the whole message."""
    end = raw.find(b"\n\n")
    end2 = raw.find(b"\r\n\r\n")
    cut = min(e for e in (end, end2, len(raw)) if e >= 0)
    m = _MESSAGE_ID.search(raw[:cut])
    if not m:
        return None
    angle = _ANGLE_ID.search(m.group(1))
    if not angle:
        return None
    return angle.group(0).decode("ascii", "replace")


def _row(raw: bytes, door: str, envelope_from: str | None, envelope_to: list[str] | None,
         source_key: str | None, first: int | None, dedupe_key: str, digest: str,
         message_id: str | None) -> InboundMessage:
    return InboundMessage(
        received_at=utcnow(), door=door, envelope_from=envelope_from,
        envelope_to=list(envelope_to or []), raw=raw, size=len(raw), digest=digest,
        message_id=message_id, source_key=source_key,
        dedupe_key=None if first else dedupe_key, duplicate_of=first,
        outcome=IGNORED if first else PENDING,
        reasons=[f"duplicate of message {first}"] if first else [])


def _keys(raw: bytes) -> tuple[str, str | None, str]:
    digest = hashlib.sha256(raw).hexdigest()
    message_id = header_message_id(raw)
    return digest, message_id, message_id or f"sha256:{digest}"


def store_many(engine: Engine, raws: list[bytes], door: str) -> list[Stored]:
    """Store a backlog's messages in one transaction (a folder replay: no envelope).

    Falls back to one transaction per message when the batch meets a concurrent store.
    """
    try:
        with session_scope(engine) as session:
            keys = [_keys(raw) for raw in raws]
            known = dict(session.execute(select(InboundMessage.dedupe_key, InboundMessage.id).where(
                InboundMessage.dedupe_key.in_({k[2] for k in keys}))).all())
            rows = []
            for raw, (digest, message_id, dedupe_key) in zip(raws, keys):
                first = known.get(dedupe_key)
                row = _row(raw, door, None, None, None, first, dedupe_key, digest, message_id)
                session.add(row)
                if first is None:
                    session.flush([row])
                    known[dedupe_key] = row.id
                rows.append(row)
            session.flush()
            return [Stored(row.id, row.duplicate_of is not None) for row in rows]
    except IntegrityError:
        return [store(engine, raw, door) for raw in raws]


def store(engine: Engine, raw: bytes, door: str, envelope_from: str | None = None,
          envelope_to: list[str] | None = None, source_key: str | None = None) -> Stored:
    """Commit the raw message and return its id. Raises when the database cannot store it,
    so the door can answer "try again later". A known `source_key` returns the stored row."""
    digest, message_id, dedupe_key = _keys(raw)
    for _attempt in range(3):
        try:
            with session_scope(engine) as session:
                if source_key is not None:
                    known = session.scalar(select(InboundMessage.id)
                                           .where(InboundMessage.source_key == source_key))
                    if known is not None:
                        return Stored(known, True)
                first = session.scalar(select(InboundMessage.id)
                                       .where(InboundMessage.dedupe_key == dedupe_key))
                row = _row(raw, door, envelope_from, envelope_to, source_key, first, dedupe_key,
                           digest, message_id)
                session.add(row)
                session.flush()
                return Stored(row.id, first is not None)
        except IntegrityError:
            # Another door stored the same message at the same moment: look again.
            continue
    raise RuntimeError("could not store the message after three attempts")
