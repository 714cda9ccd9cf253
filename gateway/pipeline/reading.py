"""Reading stored messages for the pipeline, holding no lock: which are pending, their raw
bytes parsed ahead of the transaction that decides them, in groups of bounded size."""
from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Engine, select

from gateway import intake
from gateway.db import read_scope
from gateway.models import Disposition, InboundMessage
from gateway.pipeline.parse import ParsedMail, parse

BATCH_BYTES = 32 * 1024 * 1024  # raw bytes read and parsed for one transaction at most


@dataclass(frozen=True)
class Read:
    """A stored message as read and parsed before its transaction (no lock held). Its raw
    bytes are not kept: once parsed, only their size is needed (a 25 MB message held through
    its transaction cost as much memory again)."""
    id: int
    size: int
    parsed: ParsedMail | None        # None when parsing raised (a bug): the message is held
    error: BaseException | None = None
    notes: tuple[str, ...] = ()      # reasons to add to the outcome's


@dataclass(frozen=True)
class Fetched:
    """A stored message's raw bytes, and the message whose Message-ID it reuses, if any."""
    id: int
    raw: bytes
    reused: int | None


def fetch(engine: Engine, ids: list[int]) -> list[Fetched]:
    """Read stored messages, holding no lock; missing ids are left out."""
    with read_scope(engine) as session:
        rows = {row.id: row for row in session.execute(select(
            InboundMessage.id, InboundMessage.raw, InboundMessage.message_id,
            InboundMessage.dedupe_key).where(InboundMessage.id.in_(ids)))}
        reused = intake.reused_message_ids(session, [(i, r.message_id, r.dedupe_key) for i, r in rows.items()])
    return [Fetched(i, rows[i].raw, reused.get(i)) for i in ids if i in rows]


def read(engine: Engine, ids: list[int]) -> list[Read]:
    """Read and parse stored messages, holding no lock; missing ids are left out."""
    return [parsed_read(f.id, f.raw, f.reused) for f in fetch(engine, ids)]


def parsed_read(inbound_id: int, raw: bytes, reused: int | None, parsed: ParsedMail | None = None) -> Read:
    """The message as the pipeline decides it; `parsed` is `parse(raw)` when already known."""
    if parsed is None:
        try:
            parsed = parse(raw)
        except Exception as exc:  # noqa: BLE001 - raised again in _process_in, which holds it
            return Read(inbound_id, len(raw), None, exc)
    notes = parsed.notes
    if reused is not None:
        # Its Message-ID belongs to another message: replies to it must not find this case.
        parsed = replace(parsed, message_id=None)
        notes += (f"reuses the Message-ID of message {reused} with other content",)
    return Read(inbound_id, len(raw), parsed, notes=notes)


def groups(engine: Engine, ids: list[int]) -> list[list[int]]:
    """`ids` in consecutive groups of at most `BATCH_BYTES` of raw messages (one at least).
    One message is its own group: the door's steady flow reads no sizes."""
    if len(ids) <= 1:
        return [list(ids)] if ids else []
    with read_scope(engine) as session:
        sizes = dict(session.execute(select(InboundMessage.id, InboundMessage.size)
                                     .where(InboundMessage.id.in_(ids))).all())
    groups: list[list[int]] = []
    total = BATCH_BYTES
    for inbound_id in ids:
        size = sizes.get(inbound_id, 0)
        if total + size > BATCH_BYTES:
            groups.append([])
            total = 0
        groups[-1].append(inbound_id)
        total += size
    return groups


def pending_ids(engine: Engine, limit: int = 500) -> list[int]:
    with read_scope(engine) as session:
        return list(session.scalars(select(InboundMessage.id).where(
            InboundMessage.outcome == Disposition.PENDING).order_by(InboundMessage.id).limit(limit)))
