"""Core statements on the path of every message, built once and run on the session's
connection.

The timeline, the files and the outbox are append-only on that path: their rows are
written as plain rows, never as ORM objects, so neither the unit of work nor the ORM's
bulk-insert layer stands between them and the driver (each statement object is built
once, so its compiled form is found in the engine's cache without being rebuilt). They run
in the session's transaction, and never flush it: nothing pending is needed to write them.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Select, Table, bindparam, func, insert, inspect, or_, select, update
from sqlalchemy.orm import Session

from gateway.direct import PIPELINED, Direct
from gateway.models import Attachment, Case, CaseEvent, Delivery, InboundMessage, OutboundFile, OutboundMessage


def table(model: type) -> Table:
    """A declarative class's table, typed."""
    table: Table = model.__table__  # type: ignore[attr-defined]  # a declarative class's table
    return table


CASES, EVENTS, FILES, INBOUND = table(Case), table(CaseEvent), table(Attachment), table(InboundMessage)
OUTBOUND, DELIVERIES, OUTBOUND_FILES = table(OutboundMessage), table(Delivery), table(OutboundFile)

# Every message writes these: run on the driver's cursor (direct.py), every column given.
ADD_CASE = Direct(insert(CASES).returning(CASES.c.id), returns=[CASES.c.id])
ADD_EVENT_LATER = Direct(insert(EVENTS))  # sent `later`: its id is not wanted
ADD_DELIVERIES = Direct(insert(DELIVERIES))
ADD_FILES: Insert = insert(FILES).returning(FILES.c.id, sort_by_parameter_order=True)
ADD_OUTBOUND_FILES = Direct(insert(OUTBOUND_FILES))


def _notices(by_author: bool, by_case: bool) -> Select[int, Any]:
    """A recipient's notices in a window, about an author's messages or a case (outbox.py).
    Each delivery's mail is read by its key in a scalar subquery, which neither database
    turns into a join, and the subquery gives the mail's audience, compared outside it: no
    other index than the key can serve the subquery. Planned with the statistics of tables
    that were empty a moment before (a new database's first backlog), PostgreSQL joined each
    delivery to a scan of every notice, and then read each delivery's mail through the
    index on the audience (all of them notices) instead of its key."""
    same = ([OUTBOUND.c.author == bindparam("author")] * by_author
            + [OUTBOUND.c.case_id == bindparam("case_id")] * by_case)
    audience = (select(OUTBOUND.c.audience).where(OUTBOUND.c.id == DELIVERIES.c.message_id, or_(*same))
                .scalar_subquery())
    return (select(func.count(), func.min(DELIVERIES.c.created_at))
            .where(DELIVERIES.c.recipient == bindparam("recipient"), DELIVERIES.c.created_at > bindparam("since"),
                   audience == bindparam("audience")))


# The outbox's count of a recipient's recent notices (Outbox._held_until), by (author, case):
# on the cursor, so that it comes back with what was sent `later` before it.
NOTICES = {(a, c): Direct(s, returns=list(s.selected_columns))
           for a in (False, True) for c in (False, True) if a or c for s in [_notices(a, c)]}

# session.info: the gateway's own mails looked up in this transaction, by Message-ID:
# (outbound id, case id), or None for a Message-ID that is not one of them.
OUR_MAILS = "our_mails"


def seen_outbound(session: Session, message_id: str, outbound_id: int, case_id: int | None) -> None:
    """An outbound message just written joins this transaction's look-ups (pipeline/reference.py)."""
    known = session.info.get(OUR_MAILS)
    if known is not None:
        known[message_id] = (outbound_id, case_id)


def new_id(session: Session, statement: Direct, values: dict[str, Any]) -> int:
    """Insert one row; its id."""
    row = statement.first(session, values)
    assert row is not None  # INSERT … RETURNING id
    return int(row[0])


class Drawn:
    """Rows whose id the writer needs at once, in a table whose ids nobody reads as a
    number (the timeline's events, the outbox's mails). Where statements may be sent
    `later` (PostgreSQL, the pipeline's batches: direct.py), the ids are drawn ahead from
    the table's sequence and each row goes out `later` with its id: the writer waits for
    no answer, where `INSERT … RETURNING` made it wait for the server to catch up with
    everything sent before. A transaction draws `FIRST` ids, then as many as it drew
    before (at most `AHEAD`, and never more than it has messages left to decide: `LEFT` in
    the session's info); those it does not use are dropped with it, a gap in the sequence
    as a rolled-back insert leaves (a message alone draws one at a time). Drawn in the
    transaction that uses them, they are as recent as the sequence's own: a timeline's
    order stays that of its events. Not for cases: their id is the number customers read,
    and a backlog's batches would leave gaps in it. Elsewhere `INSERT … RETURNING id`."""

    FIRST, AHEAD = 4, 32

    def __init__(self, table: Table) -> None:
        self.table = table
        self.returning = Direct(insert(table).returning(table.c.id), returns=[table.c.id])
        self.plain = Direct(insert(table))
        ids = func.array_agg(func.nextval(func.pg_get_serial_sequence(table.name, "id")))
        draw = select(ids.label("ids")).select_from(func.generate_series(1, bindparam("n")))
        self.draw = Direct(draw, returns=list(draw.selected_columns))

    def add(self, session: Session, values: dict[str, Any]) -> int:
        """Insert one row; its id."""
        if not (session.info.get(PIPELINED) and session.get_bind().dialect.name == "postgresql"):
            return new_id(session, self.returning, values)
        drawn: dict[str, tuple[list[int], int]] = session.info.setdefault(_DRAWN, {})
        ahead, so_far = drawn.get(self.table.name, ([], 0))
        if not ahead:
            n = min(max(self.FIRST, so_far), self.AHEAD, session.info.get(LEFT, 1))
            row = self.draw.first(session, {"n": n})
            assert row is not None  # an aggregate: always one row
            ahead, so_far = sorted(row[0], reverse=True), so_far + n
        id_ = ahead.pop()
        drawn[self.table.name] = (ahead, so_far)
        self.plain.later(session, [{**values, "id": id_}])
        return id_


_DRAWN = "gateway_drawn"  # session.info: by table, the ids drawn and not used yet, and how many were drawn
LEFT = "gateway_left"  # session.info: how many messages the transaction has left to decide (pipeline/run.py)
ADD_EVENT, ADD_OUTBOUND = Drawn(EVENTS), Drawn(OUTBOUND)


def new_ids(session: Session, statement: Insert, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows in one statement (executemany with RETURNING); their ids, in order."""
    ids: list[int] = list(session.connection().execute(statement, rows).scalars())
    return ids


def add(session: Session, statement: Insert | Direct, rows: list[dict[str, Any]]) -> None:
    """Insert rows in one statement (executemany); a `Direct` one is sent `later`."""
    if isinstance(statement, Direct):
        statement.later(session, rows)
    elif rows:
        session.connection().execute(statement, rows)


# UPDATE cases SET <these columns> WHERE id = …, by the set of columns a message changed.
_CASE_UPDATES: dict[frozenset[str], Direct] = {}


def write_cases(session: Session) -> None:
    """Write what changed in the session's cases (a status, its dates) by Core statements
    built once per set of columns, then mark them unchanged, so that the unit of work finds
    nothing to do there: its flush cost far more than the statement. A case with anything
    else changed (its distribution list, a relationship) is left to the flush."""
    for case in [c for c in session.dirty if isinstance(c, Case)]:
        state = inspect(case)
        if not state.committed_state.keys() <= _COLUMNS:
            continue
        # As the flush does: only the columns whose value changed (committed_state: the old ones).
        keys = frozenset(k for k, old in state.committed_state.items() if state.dict.get(k) != old)
        if keys:
            statement = _CASE_UPDATES.get(keys)
            if statement is None:
                statement = _CASE_UPDATES[keys] = Direct(update(CASES).where(CASES.c.id == bindparam("case_id")).values(
                    {key: bindparam(f"new_{key}", type_=CASES.c[key].type) for key in keys}))
            values = {f"new_{key}": state.dict[key] for key in keys}
            statement.later(session, [{"case_id": case.id, **values}])
        state._commit_all(state.dict, session.identity_map)  # as the flush does once it wrote the row


_COLUMNS = frozenset(CASES.c.keys()) - {"id"}
