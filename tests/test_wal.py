"""SQLite's WAL copied into the database outside the writers' line: `serve`'s connections
leave it to the pipeline (`db.checkpoints_apart`, `db.Checkpoint`), which copies it after
its commits without waiting for any writer, so that no door's group pays for it."""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest
from harness import CLAIRE, mail, send
from sqlalchemy import text

from gateway.config import DatabaseSettings, Settings
from gateway.db import Checkpoint, checkpoints_apart, make_engine, session_scope

MB = 1 << 20


def sqlite_engine(tmp_path: Path, name: str):
    settings = dataclasses.replace(Settings(), database=DatabaseSettings(url=f"sqlite:///{tmp_path / name}"),
                                   base_dir=str(tmp_path))
    engine = make_engine(settings)
    with session_scope(engine) as session:
        session.execute(text("CREATE TABLE blobs (b BLOB)"))
    return engine, tmp_path / name


def write(engine, megabytes: int) -> None:
    for _ in range(megabytes):
        with session_scope(engine) as session:
            session.execute(text("INSERT INTO blobs VALUES (:b)"), {"b": os.urandom(MB)})


def test_apart_the_wal_waits_for_the_checkpoint(tmp_path: Path) -> None:
    usual, usual_file = sqlite_engine(tmp_path, "usual.sqlite3")
    apart, apart_file = sqlite_engine(tmp_path, "apart.sqlite3")
    checkpoints_apart(apart)
    write(usual, 6)
    write(apart, 6)
    assert usual_file.stat().st_size > 4 * MB, "SQLite copies the WAL past 1,000 pages by itself"
    assert apart_file.stat().st_size < MB, "apart, no commit copies it"
    Checkpoint(apart)()
    assert apart_file.stat().st_size > 6 * MB
    for engine in (usual, apart):
        engine.dispose()


def test_a_checkpoint_waits_for_no_writer(tmp_path: Path) -> None:
    engine, file = sqlite_engine(tmp_path, "gateway.sqlite3")
    checkpoints_apart(engine)
    write(engine, 3)
    writing, done = threading.Event(), threading.Event()

    def writer() -> None:  # in line, its transaction open, for as long as the test wants
        with session_scope(engine) as session:
            session.execute(text("INSERT INTO blobs VALUES (:b)"), {"b": b"x"})
            writing.set()
            done.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    assert writing.wait(10)
    t0 = time.monotonic()
    Checkpoint(engine)()
    assert time.monotonic() - t0 < 2
    assert file.stat().st_size > 3 * MB
    done.set()
    thread.join()
    engine.dispose()


def test_a_second_checkpoint_within_a_quarter_second_is_skipped(tmp_path: Path) -> None:
    engine, file = sqlite_engine(tmp_path, "gateway.sqlite3")
    checkpoints_apart(engine)
    checkpoint = Checkpoint(engine)
    checkpoint()
    write(engine, 2)
    checkpoint()
    assert file.stat().st_size < MB
    time.sleep(Checkpoint.EVERY)
    checkpoint()
    assert file.stat().st_size > 2 * MB
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_serve_leaves_the_checkpoints_to_its_pipeline(gateway, relay, engine) -> None:
    with engine.connect() as connection:  # the engine serve was given
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    send(gateway.settings, mail(CLAIRE, "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Le lettrage s'arrête"))
    relay.wait_for(lambda got: any(r.rcpt == CLAIRE for r in got), 30)

