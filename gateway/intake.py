"""Store a raw message durably and idempotently; nothing else.

Every door calls `store` and answers yes (250, exit 0, IMAP flag) only once it returns.
A second delivery of the same message is stored too, so nothing is lost, but marked as a
duplicate that the pipeline ignores. The same message is the same Message-ID with the same
content: the same From, Date and Subject fields and the same body, whatever trace fields
(Received, Return-Path, Authentication-Results...) each path added, as when a message
arrives by two MX hosts. A message without a Message-ID is the same only byte for byte.
Some broken mailers reuse a Message-ID for other messages: one with other content is
stored and processed as the new message it is (the pipeline says which one it reuses the
id of).

Every value stored beside the raw bytes (Message-ID, envelope, keys) is bounded by
`gateway.bounds`, so that PostgreSQL stores it exactly as SQLite does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import bounds, rows
from gateway.db import session_scope, utcnow
from gateway.direct import Direct
from gateway.keys import Keys, keys_of
from gateway.models import Disposition, InboundMessage


@dataclass(frozen=True)
class Stored:
    id: int
    duplicate: bool


def _first(session: Session, keys: Keys) -> int | None:
    """The stored first delivery of the same message, if any. Rows stored before content
    keys existed have the bare Message-ID as their key: a copy of one is a duplicate."""
    candidates = [keys.dedupe] + ([keys.message_id] if keys.message_id else [])
    return session.scalar(select(InboundMessage.id).where(InboundMessage.dedupe_key.in_(candidates))
                          .order_by(InboundMessage.id).limit(1))


def reused_message_ids(session: Session, rows: list[tuple[int, str | None, str | None]]) -> dict[int, int]:
    """For each (id, Message-ID, dedupe key) of stored messages, the earlier message whose
    Message-ID it reuses with other content, in one query; messages reusing none are left out.

    A dedupe key is unique and only a first delivery holds one, so every earlier row of the
    same Message-ID with a key has other content: the first such row is the answer."""
    wanted = {i: message_id for i, message_id, dedupe_key in rows if message_id and dedupe_key}
    if not wanted:
        return {}
    first: dict[str | None, int] = {message_id: first_id for message_id, first_id in session.execute(
        select(InboundMessage.message_id, func.min(InboundMessage.id))
        .where(InboundMessage.message_id.in_(set(wanted.values())), InboundMessage.dedupe_key.is_not(None))
        .group_by(InboundMessage.message_id))}
    return {i: first[m] for i, m in wanted.items() if m in first and first[m] < i}


@dataclass(frozen=True)
class Incoming:
    """A raw message as a door received it, with its envelope when it has one."""
    raw: bytes
    door: str
    envelope_from: str | None = None
    envelope_to: list[str] | None = None


def _values(item: Incoming, source_key: str | None, first: int | None, keys: Keys) -> dict[str, Any]:
    return dict(
        received_at=utcnow(), door=item.door, envelope_from=bounds.envelope(item.envelope_from),
        envelope_to=[bounds.envelope(a) for a in item.envelope_to or []], raw=item.raw, size=len(item.raw),
        digest=keys.digest, message_id=keys.message_id,
        source_key=None if source_key is None else bounds.key(source_key, bounds.SOURCE_KEY),
        dedupe_key=None if first else keys.dedupe, duplicate_of=first,
        outcome=Disposition.IGNORED if first else Disposition.PENDING,
        reasons=[f"duplicate of message {first}"] if first else [], attempts=0)


_TABLE = rows.INBOUND


def _insert(session: Session, values: dict[str, Any]) -> int:
    """One row, by a Core statement (no ORM object: the raw bytes are not copied into one).
    The values go beside the statement, not into it: SQLAlchemy's cache of compiled
    statements keeps the statement it compiled, and with it a message's bytes."""
    return int(session.execute(insert(_TABLE).returning(_TABLE.c.id), values).scalar_one())


# PostgreSQL: one row per statement, all in psycopg's pipeline (`Direct.many_returning`).
# SQLAlchemy's one INSERT of many rows (50 rows of 16 values) is past what psycopg keeps of a
# statement's text, which it then parsed again for each batch: half the time of the INSERT.
_ADD_ONE = Direct(insert(_TABLE).returning(_TABLE.c.id), returns=[_TABLE.c.id])


def _insert_all(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Rows in one call to the driver (executemany with RETURNING), their ids in the order given."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return [int(row[0]) for row in _ADD_ONE.many_returning(session, rows)]
    statement = insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True)
    ids: list[int] = list(session.execute(statement, rows).scalars())
    return ids


def store_group(engine: Engine, items: list[Incoming], known_keys: list[Keys] | None = None) -> list[Stored]:
    """Store messages in one transaction (group commit: each is committed once all are),
    in one call to the driver for all but a second copy of a message of the same group
    (after it): one INSERT on SQLite, one statement a row in a pipeline on PostgreSQL.
    Raises IntegrityError when a concurrent store took one of their keys meanwhile."""
    # Before the write lock: hashing needs none.
    keys = known_keys if known_keys is not None else [keys_of(item.raw) for item in items]
    with session_scope(engine) as session:
        wanted = {k.dedupe for k in keys} | {k.message_id for k in keys if k.message_id}
        known = dict(session.execute(select(InboundMessage.dedupe_key, InboundMessage.id).where(
            InboundMessage.dedupe_key.in_(wanted))).all())
        now: list[int] = []
        later: list[int] = []
        seen: set[str] = set()
        for index, key in enumerate(keys):
            (later if key.dedupe in seen else now).append(index)
            seen.add(key.dedupe)
        firsts = {i: _first_known(known, keys[i]) for i in now}
        ids = dict(zip(now, _insert_all(session, [_values(items[i], None, firsts[i], keys[i]) for i in now]),
                       strict=True))
        known.update({keys[i].dedupe: ids[i] for i in now if firsts[i] is None})
        for i in later:
            firsts[i] = _first_known(known, keys[i])
            ids[i] = _insert(session, _values(items[i], None, firsts[i], keys[i]))
        return [Stored(ids[i], firsts[i] is not None) for i in range(len(items))]


def _first_known(known: dict[str | None, int], key: Keys) -> int | None:
    return known.get(key.dedupe) or (known.get(key.message_id) if key.message_id else None)


def store_many(engine: Engine, raws: list[bytes], door: str, keys: list[Keys] | None = None) -> list[Stored]:
    """Store a backlog's messages in one transaction (a folder replay: no envelope); `keys`,
    their keys when already known (a backlog's reading process hashed them beside).

    Falls back to one transaction per message when the batch meets a concurrent store.
    """
    try:
        return store_group(engine, [Incoming(raw, door) for raw in raws], keys)
    except IntegrityError:
        return [store(engine, raw, door) for raw in raws]


def store(engine: Engine, raw: bytes, door: str, envelope_from: str | None = None,
          envelope_to: list[str] | None = None, source_key: str | None = None, keys: Keys | None = None) -> Stored:
    """Commit the raw message and return its id. Raises when the database cannot store it,
    so the door can answer "try again later". A known `source_key` returns the stored row;
    `keys`, the message's when the door already hashed it."""
    keys = keys if keys is not None else keys_of(raw)
    bounded_source = None if source_key is None else bounds.key(source_key, bounds.SOURCE_KEY)
    for _attempt in range(3):
        try:
            with session_scope(engine) as session:
                if bounded_source is not None:
                    known = session.scalar(select(InboundMessage.id)
                                           .where(InboundMessage.source_key == bounded_source))
                    if known is not None:
                        return Stored(known, True)
                first = _first(session, keys)
                values = _values(Incoming(raw, door, envelope_from, envelope_to), source_key, first, keys)
                return Stored(_insert(session, values), first is not None)
        except IntegrityError:
            # Another door stored the same message at the same moment: look again.
            continue
    raise RuntimeError("could not store the message after three attempts")
