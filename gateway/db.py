"""Engine and session scopes. Adapters and jobs open `with session_scope(engine) as session:`;
the functions they call take a session and never commit. `read_scope` reads without taking
SQLite's write lock (so a long read never makes a door wait)."""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from gateway import direct
from gateway.config import Settings


def utcnow() -> dt.datetime:
    """The current time as naive UTC, the way every timestamp is stored."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin: savepoints
    # (used for priority points and alerts) only work that way.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the SMTP door write while the pipeline reads; NORMAL sync is durable across
    # process crashes, which is what "stored before 250" protects against.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(settings: Settings) -> Engine:
    """An engine for the configured database; creates the SQLite file's folder."""
    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        # IMMEDIATE takes the write lock at the start: SQLite has one writer anyway, and a
        # transaction that read before writing would otherwise fail (SQLITE_BUSY, no wait)
        # whenever another connection wrote in between. A read_scope only reads: it begins
        # a plain (deferred) transaction, which in WAL mode waits for no writer.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(
            "BEGIN" if conn.get_execution_options().get(_READ_ONLY) else "BEGIN IMMEDIATE"))
        return engine
    engine = create_engine(url, pool_pre_ping=True)
    direct.watch(engine)
    return engine


_READ_ONLY = "gateway_read_only"


def checkpoints_apart(engine: Engine) -> None:
    """From now on, this engine's SQLite connections leave the WAL's checkpoints to a
    `Checkpoint` (serve's engines). SQLite copies the WAL into the database in the commit
    that takes it past 1,000 pages, inside that writer's place in line: the door's group
    whose commit did it, or the pipeline's transaction the door waited for, took two or
    three times as long (about a tenth of the door's groups under load). Connections already
    open are closed, so that every connection is made this way."""
    if _sqlite_file(engine) is None:
        return
    event.listen(engine, "connect", _no_checkpoints)
    engine.dispose()


def _no_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


class Checkpoint:
    """Copy SQLite's WAL into the database file, outside the writers' line, at most every
    `EVERY` seconds: PASSIVE, it waits for no reader and no writer, and writers go on
    meanwhile. Called by serve's pipeline after each commit and each round; nothing on
    PostgreSQL."""

    EVERY = 0.25

    def __init__(self, engine: Engine) -> None:
        self.engine, self.last = engine, 0.0
        self.sqlite = _sqlite_file(engine) is not None

    def __call__(self) -> None:
        if not self.sqlite or time.monotonic() - self.last < self.EVERY:
            return
        self.last = time.monotonic()
        connection = self.engine.raw_connection()  # no transaction: the pool's connection autocommits
        cursor = connection.cursor()
        try:
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            cursor.close()
            connection.close()


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A session for reading only: it never holds SQLite's write lock. Writing in it is a
    bug (SQLite would then fail at once rather than wait). It ends with a commit of what it
    read (a rollback when the block raised): psycopg forgets every statement it prepared
    on a connection at each rollback, so that a backlog's batches, each read in one of
    these, prepared their statements again every time."""
    with engine.connect() as connection:
        session = Session(connection.execution_options(**{_READ_ONLY: True}))
        try:
            yield session
            session.commit()
        finally:
            session.close()
            connection.rollback()  # after the commit, nothing: psycopg sends no ROLLBACK then


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends normally and rolls back otherwise."""
    with one_writer(engine):
        session = sessionmaker(engine, expire_on_commit=False)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


_writing = threading.local()


@contextmanager
def one_writer(engine: Engine) -> Iterator[None]:
    """On a SQLite file, wait in line for the write transaction: an exclusive lock on
    `<file>-writers` (flock), held until the commit. SQLite lets one writer in at a time and
    makes the others poll, sleeping up to 100 ms between tries: in the kernel's line, a
    writer gets in the moment the one before it leaves. Nested scopes share the lock. A
    file this user may not open is no line at all (never a failure to store)."""
    path = _sqlite_file(engine)
    if path is None:
        yield
        return
    if getattr(_writing, "depth", 0):
        _writing.depth += 1
        try:
            yield
        finally:
            _writing.depth -= 1
        return
    fd = _line(path + "-writers")
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    with _held(fd):
        yield


def try_line(engine: Engine) -> contextlib.AbstractContextManager[None] | None:
    """`one_writer` without waiting: the place in line taken now, to be held in a `with`
    block (a session_scope inside waits no more), or None when another writer holds it.
    For the SMTP door, whose event loop must not stop while another process writes."""
    path = _sqlite_file(engine)
    held = getattr(_writing, "depth", 0) > 0
    fd = None if path is None or held else _line(path + "-writers")
    if fd is None:
        return contextlib.nullcontext()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:  # a lock the file system refuses: no line, as for a file one may not open
        os.close(fd)
        return contextlib.nullcontext()
    return _held(fd)


@contextmanager
def lent_line() -> Iterator[None]:
    """For a thread to which the thread holding the writers' line lends it (the SMTP door's
    store thread, while its event loop holds the line): its session scopes take no place in
    line of their own."""
    depth = getattr(_writing, "depth", 0)
    _writing.depth = depth + 1
    try:
        yield
    finally:
        _writing.depth = depth


@contextmanager
def _held(fd: int) -> Iterator[None]:
    _writing.depth = 1
    try:
        yield
    finally:
        _writing.depth = 0
        os.close(fd)  # releases the lock


def _line(path: str) -> int | None:
    """The lock file, opened (created if need be; read-only will do for flock); None when
    this user cannot open it: SQLite's own locking is then the only line, as before."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(path, flags, 0o644)
        except OSError:
            continue
    return None


def _sqlite_file(engine: Engine) -> str | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return url.database
