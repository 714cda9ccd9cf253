"""Statements run on the driver's cursor (gateway/direct.py) write and read what the engine
would, on both databases: dates, JSON, literals of the statement, RETURNING; and a driver's
error reaches the caller as the engine's exception (an IntegrityError stays one). Rows sent
`later` (on PostgreSQL, in a pipeline nobody waits for) are there for the next statement,
however it is run; their error is raised by the next statement that waits, or the commit;
a rollback forgets them."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from gateway import intake, rows
from gateway.db import session_scope
from gateway.direct import PIPELINED, Direct
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


def _delivery(message_id: int, recipient: str) -> dict[str, object]:
    row = {c.key: None for c in Delivery.__table__.c if c.key != "id"}
    row.update(message_id=message_id, recipient=recipient, token="", created_at=AT, status="pending",
               attempts=0, next_attempt_at=AT)
    return row


def _outbound(session, message_id: str = "<m@x.example>") -> int:
    return rows.ADD_OUTBOUND.add(session, {**_outbound_values(), "message_id": message_id})


def test_rows_sent_later_are_read_by_the_next_statement_whichever_runs_it(engine) -> None:
    with session_scope(engine) as session:
        session.info[PIPELINED] = True
        message = _outbound(session)
        rows.ADD_DELIVERIES.later(session, [_delivery(message, "a@b.example"), _delivery(message, "c@d.example")])
        # The engine's statement, then a statement on the cursor, each after rows sent later.
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2
        rows.ADD_DELIVERIES.later(session, [_delivery(message, "e@f.example")])
        assert rows.ADD_OUTBOUND.returning.first(session, {**_outbound_values(), "message_id": "<n@x.example>"}) is not None
        rows.ADD_DELIVERIES.later(session, [_delivery(message, "g@h.example")])  # then the commit
    with session_scope(engine) as session:
        assert sorted(session.scalars(select(Delivery.recipient))) == [
            "a@b.example", "c@d.example", "e@f.example", "g@h.example"]


def _outbound_values() -> dict[str, object]:
    values = {c.key: None for c in rows.OUTBOUND.c if c.key != "id"}
    values.update(created_at=AT, kind="ack", auto_submitted="auto-replied", audience="", to_header=[],
                  cc_header=[], subject="s", text="t", html="h")
    return values


@pytest.mark.parametrize("then", ["engine", "cursor", "commit"])
def test_an_error_sent_later_is_raised_by_the_next_statement_that_waits(engine, then) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as session:  # no such outbound message
        session.info[PIPELINED] = True
        rows.ADD_DELIVERIES.later(session, [_delivery(999_999, "a@b.example")])
        if then == "engine":
            session.scalar(select(Delivery.id).limit(1))
        elif then == "cursor":
            _outbound(session)
    with session_scope(engine) as session:  # nothing of it written, the connection still good
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_a_rollback_forgets_what_was_sent_later(engine) -> None:
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        session.info[PIPELINED] = True
        message = _outbound(session)
        rows.ADD_DELIVERIES.later(session, [_delivery(message, "a@b.example")])
        raise RuntimeError("the block fails")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        session.info[PIPELINED] = True  # the next transaction on the same connection writes as usual
        rows.ADD_DELIVERIES.later(session, [_delivery(_outbound(session), "b@c.example")])
    with session_scope(engine) as session:
        assert list(session.scalars(select(Delivery.recipient))) == ["b@c.example"]


def test_ids_drawn_ahead_are_the_rows_own_in_the_order_written(engine) -> None:
    """In a transaction of the pipeline, an outbound mail's id is drawn ahead on PostgreSQL
    (its row then sent later) and returned by the insert on SQLite: either way it is the row's,
    ids ascend in the order the rows were written, and a message alone leaves no gap."""
    with session_scope(engine) as session:
        session.info[PIPELINED], session.info[rows.LEFT] = True, 10
        ids = [_outbound(session, f"<m{i}@x.example>") for i in range(10)]
    with session_scope(engine) as session:
        session.info[PIPELINED], session.info[rows.LEFT] = True, 1
        alone = _outbound(session, "<alone@x.example>")
    with session_scope(engine) as session:
        session.info[PIPELINED] = True
        after = _outbound(session, "<after@x.example>")
    assert ids == sorted(set(ids)) and ids[0] < ids[-1] < alone < after
    assert ids[-1] - ids[0] == 9   # drawn 4, 4, then 8: the last six unused
    assert after == alone + 1
    with session_scope(engine) as session:
        got = {m: n for m, n in session.execute(select(rows.OUTBOUND.c.message_id, rows.OUTBOUND.c.id))}
    assert got == {**{f"<m{i}@x.example>": n for i, n in enumerate(ids)}, "<alone@x.example>": alone,
                   "<after@x.example>": after}


def test_a_group_stored_in_one_call_gets_each_row_its_own_id_in_order(engine) -> None:
    """A door's group (or a backlog's batch) is inserted in one call to the driver (on
    PostgreSQL one statement per row in psycopg's pipeline, `Direct.many_returning`): each
    message gets the id of its own row, in the order given; a duplicate in the same group
    points at its first copy."""
    raws = [f"From: a{i}@b.example\r\nSubject: n{i}\r\nMessage-ID: <n{i}@b.example>\r\n\r\nHello {i}\r\n".encode()
            for i in range(30)]
    stored = intake.store_many(engine, [*raws, raws[3]], "pipe")
    assert [s.id for s in stored[:30]] == sorted(s.id for s in stored[:30])
    assert [s.duplicate for s in stored] == [False] * 30 + [True]
    with session_scope(engine) as session:
        by_id = {i: (raw, duplicate_of) for i, raw, duplicate_of in session.execute(
            select(InboundMessage.id, InboundMessage.raw, InboundMessage.duplicate_of))}
    assert [by_id[s.id][0] for s in stored] == [*raws, raws[3]]
    assert by_id[stored[30].id][1] == stored[3].id
