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

from gateway.direct import Direct
from gateway.models import Attachment, Case, CaseEvent, Delivery, InboundMessage, OutboundFile, OutboundMessage


def table(model: type) -> Table:
    """A declarative class's table, typed."""
    table: Table = model.__table__  # type: ignore[attr-defined]  # a declarative class's table
    return table


CASES, EVENTS, FILES, INBOUND = table(Case), table(CaseEvent), table(Attachment), table(InboundMessage)
OUTBOUND, DELIVERIES, OUTBOUND_FILES = table(OutboundMessage), table(Delivery), table(OutboundFile)

# Every message writes these: run on the driver's cursor (direct.py), every column given.
ADD_CASE = Direct(insert(CASES).returning(CASES.c.id), returns=[CASES.c.id])
ADD_EVENT = Direct(insert(EVENTS).returning(EVENTS.c.id), returns=[EVENTS.c.id])
ADD_EVENT_LATER = Direct(insert(EVENTS))  # sent `later`: its id is not wanted
ADD_OUTBOUND = Direct(insert(OUTBOUND).returning(OUTBOUND.c.id), returns=[OUTBOUND.c.id])
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
