"""On PostgreSQL, the statements psycopg prepared on a connection outlive a session that
only read: psycopg forgets them all at every rollback, and each batch of a backlog reads."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from gateway.db import read_scope, session_scope
from gateway.models import InboundMessage


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite prepares nothing to lose
def test_statements_prepared_outlive_a_reading_session(engine) -> None:
    for n in range(6):  # psycopg prepares a statement at its fifth run
        with session_scope(engine) as session:
            session.execute(select(InboundMessage.id).where(InboundMessage.id == n)).all()
    with read_scope(engine) as session:
        session.execute(select(InboundMessage.size).where(InboundMessage.id == 1)).all()
    with session_scope(engine) as session:
        prepared = session.scalars(text("SELECT statement FROM pg_prepared_statements")).all()
    assert any("inbound_messages.id = $1" in statement for statement in prepared)
