"""Shared fixtures: settings and an engine on a fresh database, and a free loopback port.

Every test that uses `settings` or `engine` runs on SQLite (a new file per test) and a
second time on PostgreSQL when GATEWAY_TEST_POSTGRES_URL names a server, e.g.
postgresql+psycopg://postgres@127.0.0.1:5432/test. The PostgreSQL variant uses one
database created for the test session (`gw_test_<random>`, dropped at the end) whose
tables are emptied before each test. Without that variable the PostgreSQL variant is
skipped, or fails when GATEWAY_TEST_REQUIRE_ALL=1 (as in CI), so nothing is skipped silently.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, make_url, text

from gateway import schema
from gateway.config import DatabaseSettings, Settings
from gateway.db import make_engine

POSTGRES_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "")
REQUIRE_ALL = os.environ.get("GATEWAY_TEST_REQUIRE_ALL") == "1"
SUPPORT_ADDRESS = "assistance@editeur.example"


# -- ports -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function that returns a TCP port free on 127.0.0.1 right now: `port = free_port()`."""
    return _free_port


# -- databases -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a PostgreSQL database created for this test session and dropped after it."""
    if not POSTGRES_URL:
        reason = ("PostgreSQL variant: set GATEWAY_TEST_POSTGRES_URL, e.g. "
                  "postgresql+psycopg://postgres@127.0.0.1:5432/test")
        if REQUIRE_ALL:
            pytest.fail(f"{reason} (GATEWAY_TEST_REQUIRE_ALL=1 forbids skipping it)")
        pytest.skip(reason)
    name = f"gw_test_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _empty_tables(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            quote = connection.dialect.identifier_preparer.quote
            names = [quote(n) for n in inspect(connection).get_table_names()
                     if n != "alembic_version"]
            if names:
                connection.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for one test: a new SQLite file, or the emptied PostgreSQL one."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    url: str = request.getfixturevalue("postgres_database")
    _empty_tables(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Default settings on the test's database, relative paths under tmp_path.

    Derive variants with dataclasses.replace, e.g.
    `replace(settings, smtp=replace(settings.smtp, port=free_port()))`.
    """
    base = Settings()
    return dataclasses.replace(
        base, database=DatabaseSettings(url=database_url), base_dir=str(tmp_path),
        support=dataclasses.replace(base.support, address=SUPPORT_ADDRESS))


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """An engine on `settings`' database with the schema upgraded; disposed after the test."""
    engine = make_engine(settings)
    try:
        schema.upgrade(engine)
        yield engine
    finally:
        engine.dispose()


# -- the gateway end to end ----------------------------------------------------------------

@pytest.fixture
def loaded(engine: Engine) -> Engine:
    """`engine` with the demo clients, licences, contacts and agents of harness.SAMPLE_DATA."""
    from harness import SAMPLE_DATA

    from gateway import refdata
    from gateway.db import session_scope
    with session_scope(engine) as session:
        refdata.import_data(session, refdata.load_file(SAMPLE_DATA))
    return engine


@pytest.fixture
def relay(free_port: Callable[[], int], settings: Settings, engine: Engine) -> Iterator[object]:
    """A real SMTP server standing in for the outbound relay; collects what it is sent.

    When the test ends, every mail it got is checked against its outbox row: Subject and
    the display names of From, To, Cc and Reply-To must decode, with a strict RFC 2047
    decoder, to exactly the text meant (see tests/strict.py)."""
    from harness import Relay, sent_problems
    server = Relay(free_port())
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()
    found = sent_problems(engine, settings.support.name, server.log)
    assert not found, "headers that do not decode to the text meant:\n" + "\n".join(found)


@pytest.fixture
def gateway(settings: Settings, loaded: Engine, relay: object,
            free_port: Callable[[], int]) -> Iterator[object]:
    """A running gateway (SMTP door, pipeline, outbox sender) wired to `relay`, demo data loaded."""
    from harness import running, wired
    with running(wired(settings, free_port(), relay.controller.port), loaded) as gw:  # type: ignore[attr-defined]
        yield gw
