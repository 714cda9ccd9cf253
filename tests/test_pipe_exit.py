"""`gateway ingest` behind Postfix's pipe(8): exit 75 on any failure to store, 0 once stored,
and one short line of output at most, whatever happens to the pipes or the process.

Each test runs `gateway ingest` as a child process the way pipe(8) does: the message on
standard input, standard output and error on one pipe that the parent reads up to 4 KiB
and then closes, and the exit status as the only answer. The pipe holds 4 KiB, so the
child meets a closed pipe as soon as it writes more than the parent reads. Postfix keeps a
message on 75 and retries; any other failing status bounces it for good.
"""
from __future__ import annotations

import fcntl
import logging
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import CLAIRE, mail
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy import select as sql_select
from test_cli import OPEN, Cli, write_config

from gateway import logs, schema
from gateway.config import DatabaseSettings, Settings
from gateway.db import make_engine
from gateway.models import InboundMessage

GATEWAY = Path(sys.executable).with_name("gateway")
OUTPUT_LIMIT = 4096  # what pipe(8) reads of a command's output before closing the pipe
SHORT_LINE = 200
DEADLINE = 60.0
AS_ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Exit:
    status: int
    output: bytes  # what the parent read of standard output and error together


@dataclass
class Child:
    """`gateway ingest` started as pipe(8) starts it; `read_end` is the parent's end of the pipe."""
    process: subprocess.Popen[bytes]
    read_end: int

    def finish(self, close_at_once: bool = False) -> Exit:
        """Read up to 4 KiB (nothing when `close_at_once`), close the pipe, wait for the status."""
        output = b"" if close_at_once else _read_up_to(self.read_end, OUTPUT_LIMIT)
        os.close(self.read_end)
        return Exit(self.process.wait(timeout=DEADLINE), output)


def _read_up_to(fd: int, limit: int) -> bytes:
    data = b""
    deadline = time.monotonic() + DEADLINE
    while len(data) < limit:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"the child neither wrote nor ended within {DEADLINE} s")
        chunk = os.read(fd, limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


def start(config: Path, raw: bytes, prefix: Sequence[str] = (), paths: Sequence[str] = ()) -> Child:
    """Run `gateway --config CONFIG ingest [PATHS]` (after `prefix`, e.g. setpriv) with `raw`
    on standard input."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, OUTPUT_LIMIT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    process = subprocess.Popen([*prefix, str(GATEWAY), "--config", str(config), "ingest", *paths],
                               stdin=subprocess.PIPE, stdout=write_end, stderr=write_end,
                               cwd="/", env=env)
    os.close(write_end)
    assert process.stdin is not None
    process.stdin.write(raw)
    process.stdin.close()
    return Child(process, read_end)


def deliver(config: Path, raw: bytes, prefix: Sequence[str] = (), close_at_once: bool = False) -> Exit:
    return start(config, raw, prefix).finish(close_at_once)


def assert_deferred(result: Exit) -> None:
    """Exit 75 and at most one short line, without a traceback."""
    assert result.status == 75, result
    assert len(result.output) < SHORT_LINE, result.output
    assert result.output.count(b"\n") <= 1 and b"Traceback" not in result.output, result.output


def unprivileged() -> list[str]:
    """As root, a prefix that runs the child as `nobody`, as a pipe `user=` that does not own
    the database. The child keeps the right to read any file (CAP_DAC_READ_SEARCH, never to
    write one): the interpreter of the virtualenv may live under a private /root. Not root:
    no prefix, the files are made read-only instead."""
    if not AS_ROOT:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]


def stored(engine: Engine, message_id: str) -> list[str]:
    """The outcomes of the rows stored under `message_id`."""
    with engine.connect() as connection:
        return list(connection.scalars(sql_select(InboundMessage.outcome)
                                       .where(InboundMessage.message_id == message_id)))


def sqlite_database(path: Path) -> str:
    """A SQLite database at `path` with the schema, and no connection left open on it."""
    url = f"sqlite:///{path}"
    engine = make_engine(Settings(database=DatabaseSettings(url=url)))
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def readonly_sqlite(tmp_path: Path) -> Iterator[str]:
    """A SQLite database the child can read but not write: owned by root and its folder too
    (as root), or a read-only file in a read-only folder (otherwise)."""
    folder = tmp_path / "db"
    folder.mkdir()
    url = sqlite_database(folder / "gateway.sqlite3")
    if AS_ROOT:
        yield url
        return
    (folder / "gateway.sqlite3").chmod(0o444)
    folder.chmod(0o555)
    try:
        yield url
    finally:
        folder.chmod(0o755)


# -- failures to store ----------------------------------------------------------------------

@pytest.mark.parametrize("close_at_once", [False, True], ids=["reads-4k", "closes-at-once"])
def test_a_read_only_sqlite_database_defers_the_message(readonly_sqlite, tmp_path, close_at_once) -> None:
    config = write_config(tmp_path / "gateway.toml", readonly_sqlite)
    result = deliver(config, mail(CLAIRE, OPEN).as_bytes(), unprivileged(), close_at_once)
    assert_deferred(result)
    if not close_at_once:
        assert result.output.startswith(b"gateway: could not store the message ("), result.output
        assert result.output.endswith(b"; the MTA will retry\n"), result.output


def test_the_traceback_goes_to_the_log_file(readonly_sqlite, tmp_path) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    folder.chmod(0o777)  # the child may run as nobody
    config = write_config(tmp_path / "gateway.toml", readonly_sqlite, log={"file": str(folder / "gateway.log")})
    assert_deferred(deliver(config, mail(CLAIRE, OPEN).as_bytes(), unprivileged()))
    log = (folder / "gateway.log").read_text(encoding="utf-8")
    assert "could not store the message" in log and "Traceback" in log, log


@pytest.mark.postgres
def test_a_read_only_postgresql_database_defers_the_message(postgres_database, tmp_path) -> None:
    engine = create_engine(postgres_database)
    name = make_url(postgres_database).database
    msg = mail(CLAIRE, OPEN)
    try:
        schema.upgrade(engine)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        try:
            result = deliver(write_config(tmp_path / "gateway.toml", postgres_database), msg.as_bytes())
        finally:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
        assert_deferred(result)
        assert b"read-only transaction" in result.output, result.output
        engine.dispose()  # new sessions see the database writable again
        assert stored(engine, msg["Message-ID"]) == []
    finally:
        engine.dispose()


def test_a_missing_configuration_defers_the_message(tmp_path) -> None:
    result = Cli(tmp_path / "missing.toml")("ingest", input=mail(CLAIRE, OPEN).as_bytes())
    assert result.exit_code == 75, result.output
    assert result.stderr.startswith("gateway: could not store the message (configuration file ")
    assert result.stderr.count("\n") == 1 and len(result.stderr) < SHORT_LINE


# -- stored ------------------------------------------------------------------------------------

@pytest.mark.parametrize("close_at_once", [False, True], ids=["reads-4k", "closes-at-once"])
def test_a_stored_message_exits_0_in_silence(settings, loaded, tmp_path, close_at_once) -> None:
    msg = mail(CLAIRE, OPEN)
    config = write_config(tmp_path / "gateway.toml", settings.database_url)
    assert deliver(config, msg.as_bytes(), close_at_once=close_at_once) == Exit(0, b"")
    assert stored(loaded, msg["Message-ID"]) == ["created"]


def test_a_replay_whose_output_is_closed_exits_0(settings, loaded, tmp_path) -> None:
    msg = mail(CLAIRE, OPEN)
    (tmp_path / "open.eml").write_bytes(msg.as_bytes())
    config = write_config(tmp_path / "gateway.toml", settings.database_url)
    child = start(config, b"", paths=[str(tmp_path / "open.eml")])
    assert child.finish(close_at_once=True).status == 0
    assert stored(loaded, msg["Message-ID"]) == ["created"]


def test_a_log_file_that_cannot_be_opened_changes_nothing(tmp_path) -> None:
    url = sqlite_database(tmp_path / "gateway.sqlite3")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")
    config = write_config(tmp_path / "gateway.toml", url, log={"file": str(blocker / "gateway.log")})
    assert deliver(config, mail(CLAIRE, OPEN).as_bytes()) == Exit(0, b"")


# -- syslog ------------------------------------------------------------------------------------

def test_a_pipe_logs_to_syslog_with_facility_mail(tmp_path) -> None:
    address = tmp_path / "log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(address))
        logs.for_pipe(str(address))
        try:
            try:
                raise OSError("disk on fire")
            except OSError:
                logging.getLogger("gateway.test").error("could not store the message", exc_info=True)
            server.settimeout(DEADLINE)
            datagram = server.recv(65536)
        finally:
            logs.close()
    # <19>: facility mail (2) * 8 + severity error (3).
    assert datagram.startswith(b"<19>gateway[%d]: ERROR gateway.test: could not store the message\n"
                               % os.getpid()), datagram
    assert b"Traceback" in datagram and b"disk on fire" in datagram


def test_without_a_syslog_listener_a_pipe_logs_nowhere(tmp_path, capfd) -> None:
    address = tmp_path / "log"
    address.write_text("a socket file nobody listens on")
    logs.for_pipe(str(address))
    try:
        logging.getLogger("gateway.test").error("could not store the message")
    finally:
        logs.close()
    assert capfd.readouterr() == ("", "")


# -- signals -----------------------------------------------------------------------------------

def _await_open(pid: int, path: Path) -> None:
    """Wait until process `pid` has `path` open: it is past start-up and at the database."""
    deadline = time.monotonic() + DEADLINE
    fds = Path(f"/proc/{pid}/fd")
    while time.monotonic() < deadline:
        try:
            if any(os.readlink(fd) == str(path.resolve()) for fd in fds.iterdir()):
                return
        except FileNotFoundError:  # a descriptor closed while we looked
            continue
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never opened {path}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGPIPE],
                         ids=lambda s: signal.Signals(s).name)
def test_a_signal_before_the_commit_defers_the_message_at_once(tmp_path, signum) -> None:
    path = tmp_path / "gateway.sqlite3"
    url = sqlite_database(path)
    config = write_config(tmp_path / "gateway.toml", url)
    msg = mail(CLAIRE, OPEN)
    # The test holds the write lock, so the child waits in SQLite's busy timeout (30 s).
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        child = start(config, msg.as_bytes())
        _await_open(child.process.pid, path)
        began = time.monotonic()
        child.process.send_signal(signum)
        result = child.finish()
        assert time.monotonic() - began < 10, "the child waited for the lock instead of leaving"
        lock.execute("ROLLBACK")
    finally:
        lock.close()
    assert_deferred(result)
    assert signal.Signals(signum).name.encode() in result.output, result.output
    check = create_engine(url)
    try:
        assert stored(check, msg["Message-ID"]) == []
        with check.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    finally:
        check.dispose()
    assert deliver(config, msg.as_bytes()).status == 0  # the MTA's retry stores it
