"""Job-run records for `gateway status`: one JSON value per job in gateway_state, under
"job:<name>": when it last ran (its clock), what it did, what went wrong, and when and
what it is expected to do next (written by the scheduler of `gateway serve`)."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from gateway.db import session_scope
from gateway.jobs import NAMES
from gateway.models import State

PREFIX = "job:"


def iso(moment: dt.datetime | None) -> str | None:
    return moment.replace(tzinfo=dt.UTC).isoformat() if moment else None


def read(session: Session, name: str) -> dict[str, Any]:
    value = session.scalar(select(State.value).where(State.key == PREFIX + name))
    return json.loads(value) if value else {}


def write(session: Session, name: str, **fields: Any) -> None:
    """Merge `fields` into the job's record. Two gateways may write at once: the row is
    created if missing and locked before it is read (on SQLite, the first statement being
    a write takes the database's write lock), so neither loses the other's fields."""
    key = PREFIX + name
    insert = _insert(session)
    session.execute(insert(State).values(key=key, value="{}").on_conflict_do_nothing(index_elements=[State.key]))
    current = session.scalar(select(State.value).where(State.key == key).with_for_update())
    value = json.loads(current or "{}") | fields
    session.execute(update(State).where(State.key == key)
                    .values(value=json.dumps(value, ensure_ascii=False, sort_keys=True)))


def _insert(session: Session) -> Any:
    """The `insert` of the database's own dialect (ON CONFLICT DO NOTHING), imported here:
    loading PostgreSQL's dialect costs a command on SQLite about 30 ms."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql
        return postgresql.insert
    from sqlalchemy.dialects import sqlite
    return sqlite.insert


def save(engine: Engine, name: str, **fields: Any) -> None:
    """Merge `fields` into the job's record, in a transaction of its own."""
    with session_scope(engine) as session:
        write(session, name, **fields)


def report(session: Session) -> dict[str, dict[str, Any]]:
    """Every job's record, by name; an empty record for a job that never ran."""
    return {name: read(session, name) for name in NAMES}
