"""The databases the benchmark measures on: SQLite files in its work folder, PostgreSQL
databases it creates (`bench_<random>`) and always drops, and what their tables say."""
from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class Postgres:
    """A PostgreSQL server on which the benchmark creates its own databases."""

    def __init__(self, url: str) -> None:
        self.server = make_url(url)
        self.created: list[str] = []

    def _admin(self):  # type: ignore[no-untyped-def]
        return create_engine(self.server.set(database="postgres"), isolation_level="AUTOCOMMIT")

    def check(self) -> str:
        """The server's version; raises when it cannot be reached."""
        engine = self._admin()
        try:
            with engine.connect() as connection:
                return connection.execute(text("SHOW server_version")).scalar_one()
        finally:
            engine.dispose()

    def create(self, purpose: str) -> str:
        """A new empty database; returns its URL."""
        name = f"bench_{purpose.replace('-', '_')}_{secrets.token_hex(4)}"
        engine = self._admin()
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        self.created.append(name)
        return self.server.set(database=name).render_as_string(hide_password=False)

    def checkpoint(self) -> None:
        """Write every dirty page now (needs a superuser), so that no checkpoint runs later."""
        engine = self._admin()
        try:
            with engine.connect() as connection:
                connection.execute(text("CHECKPOINT"))
        finally:
            engine.dispose()

    def drop_all(self) -> None:
        """Drop every database this object created (connections left open are cut)."""
        engine = self._admin()
        try:
            with engine.connect() as connection:
                for name in self.created:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()
        self.created.clear()


def scalar(url: str, sql: str) -> object:
    """One value from the database at `url`."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def outcomes(url: str, after: int = 0) -> dict[str, int]:
    """How many stored messages (with an id above `after`) ended in each outcome."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(text(
                "SELECT outcome, count(*) FROM inbound_messages WHERE id > :after "
                "GROUP BY outcome ORDER BY outcome"), {"after": after}).all())
    finally:
        engine.dispose()
