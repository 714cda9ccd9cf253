"""Statements run on the driver's cursor (gateway/direct.py) write and read what the engine
would, on both databases: dates, JSON, literals of the statement, RETURNING; and a driver's
error reaches the caller as the engine's exception (an IntegrityError stays one)."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from gateway import intake, rows
from gateway.db import session_scope
from gateway.direct import Direct
from gateway.models import Delivery, InboundMessage

INBOUND = InboundMessage.__table__
AT = dt.datetime(2026, 11, 30, 12, 0, 0)


def test_a_row_written_directly_reads_back_through_the_engine(engine) -> None:
    stored = intake.store_many(engine, [b"From: a@b.example\r\nSubject: x\r\n\r\nHello\r\n"], "pipe")[0]
    bump = Direct(update(INBOUND).where(INBOUND.c.id == bindparam("row_id"))
                  .values(attempts=INBOUND.c.attempts + 2).returning(INBOUND.c.id, INBOUND.c.reasons),
                  returns=[INBOUND.c.id, INBOUND.c.reasons])
    with session_scope(engine) as session:
        assert bump.first(session, {"row_id": stored.id, "reasons": ["un", "deux é"], "processed_at": AT}) \
            == (stored.id, ["un", "deux é"])
        assert bump.first(session, {"row_id": 10_000, "reasons": [], "processed_at": AT}) is None
    with session_scope(engine) as session:
        row = session.get(InboundMessage, stored.id)
        assert (row.attempts, row.reasons, row.processed_at) == (2, ["un", "deux é"], AT)


def test_every_column_is_given_or_the_statement_is_refused(engine) -> None:
    with session_scope(engine) as session, pytest.raises(ValueError, match="no value for"):
        rows.ADD_DELIVERIES.many(session, [{"message_id": 1, "recipient": "a@b.example"}])


def test_the_drivers_error_is_the_engines(engine) -> None:
    delivery = {c.key: None for c in Delivery.__table__.c if c.key != "id"}
    delivery.update(message_id=999_999, recipient="a@b.example", token="", created_at=AT, status="pending",
                    attempts=0, next_attempt_at=AT)
    with pytest.raises(IntegrityError), session_scope(engine) as session:  # no such outbound message
        rows.ADD_DELIVERIES.many(session, [delivery])
    with session_scope(engine) as session:  # the connection is still good for the next one
        assert session.scalar(select(Delivery.id).limit(1)) is None
