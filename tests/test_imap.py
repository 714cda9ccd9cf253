"""The IMAP door against a real Dovecot on loopback: store, flag, move; never twice, never lost.

One Dovecot serves the module, each test with a fresh user (an empty mailbox); the tests
that restart the server or need TLS start their own. Without Dovecot the tests are
skipped, or fail when GATEWAY_TEST_REQUIRE_ALL=1.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from dovecot import CutRelay, Dovecot, Mailbox, free_port, missing
from harness import CLAIRE, mail, table_away
from imapclient import IMAPClient
from sqlalchemy import Engine, select, update

from gateway import config, intake
from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.models import Case, Disposition, InboundMessage
from gateway.receive import imap
from gateway.receive.imap import ImapDoor
from gateway.worker import Loop, process_pending

pytestmark = pytest.mark.imap

REQUIRE_ALL = os.environ.get("GATEWAY_TEST_REQUIRE_ALL") == "1"
SEEN = b"\\Seen"
PROCESSED = "Traités"


def message(subject: str = "Impression impossible", size: int = 0) -> bytes:
    """A message with CRLF line ends (as IMAP returns it) and a unique Message-ID."""
    padding = "".join(f"ligne {i:05d} {'x' * 60}\r\n" for i in range(size // 72 + 1)) if size else ""
    return (f"From: Client <client@example.com>\r\nTo: assistance@editeur.example\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@example.com>\r\n\r\n"
            f"Bonjour, l'édition ne marche plus.\r\n{padding}").encode()


def rows(engine: Engine) -> list[InboundMessage]:
    with session_scope(engine) as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def door_status(engine: Engine) -> dict:
    with session_scope(engine) as session:
        return imap.status(session)


def until(predicate: Callable[[], object], timeout: float = 15, what: str = "") -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


# -- servers and doors ---------------------------------------------------------------------

def _start(root: Path, tls: bool = False) -> Dovecot:
    reason = missing()
    if reason:
        if REQUIRE_ALL:
            pytest.fail(f"{reason} (GATEWAY_TEST_REQUIRE_ALL=1 forbids skipping it)")
        pytest.skip(reason)
    server = Dovecot(root, free_port(), free_port() if tls else 0)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """The Dovecot shared by the module's tests (plain IMAP, ssl = no)."""
    shared = _start(tmp_path_factory.mktemp("dovecot"))
    yield shared
    shared.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Callable[..., Dovecot]]:
    """Start a Dovecot for this test alone: `own_server(tls=True)`."""
    started: list[Dovecot] = []

    def start(tls: bool = False) -> Dovecot:
        started.append(_start(tmp_path / "dovecot", tls))
        return started[-1]

    (tmp_path / "dovecot").mkdir()
    yield start
    for one in started:
        one.close()


@pytest.fixture
def mailbox(server: Dovecot) -> Mailbox:
    return server.add_user()


def imap_settings(settings: Settings, mailbox: Mailbox, **changes: object) -> Settings:
    """`settings` reading `mailbox` in plain text, processed mail moved to PROCESSED."""
    base = replace(settings.imap, enabled=True, host="127.0.0.1", port=mailbox.server.port,
                   ssl=False, starttls=False, username=mailbox.user, password=mailbox.password,
                   processed_folder=PROCESSED, idle_seconds=60, poll_seconds=60, timeout_seconds=10)
    return replace(settings, imap=replace(base, **changes))


@pytest.fixture
def make_door(engine: Engine) -> Iterator[Callable[..., ImapDoor]]:
    """Build doors that retry fast (0.05 s doubling up to 0.4 s); stopped after the test."""
    doors: list[ImapDoor] = []

    def make(settings: Settings, on_stored: Callable[[int], None] | None = None) -> ImapDoor:
        woken: list[int] = []
        door = ImapDoor(settings, engine, on_stored or woken.append, first_delay=0.05, max_delay=0.4)
        door.woken = woken  # type: ignore[attr-defined]  # what the default on_stored was given
        doors.append(door)
        return door

    yield make
    for door in doors:
        door.stop()


# -- one pass ---------------------------------------------------------------------------------

def test_a_new_message_is_stored_then_flagged_seen_and_moved(settings, engine, mailbox, make_door) -> None:
    assert door_status(engine) == {"state": "never run"}
    raw = message()
    uid = mailbox.append("INBOX", raw)
    door = make_door(imap_settings(settings, mailbox))

    counts = door.run_once()

    assert (counts.stored, counts.known, counts.too_big, counts.failed) == (1, 0, 0, 0)
    [row] = rows(engine)
    uidvalidity = mailbox.uidvalidity("INBOX")
    assert (row.raw, row.door, row.outcome) == (raw, "imap", Disposition.PENDING)
    assert row.source_key == f"imap:127.0.0.1:{mailbox.user}:INBOX:{uidvalidity}:{uid}"
    assert door.woken == [row.id]
    assert mailbox.messages("INBOX") == {}
    assert [flags for flags in mailbox.messages(PROCESSED).values()] == [{SEEN}]
    # Nothing left to do: a second pass stores nothing.
    assert door.run_once().stored == 0
    status = door_status(engine)
    assert status["state"] == "connected" and status["consecutive_failures"] == 0
    assert status["last_counts"] == {"stored": 0, "known": 0, "too_big": 0, "failed": 0}


def test_without_a_processed_folder_mail_stays_seen_and_mail_read_by_someone_is_not_missed(
        settings, engine, mailbox, make_door) -> None:
    door = make_door(imap_settings(settings, mailbox, processed_folder=""))
    first = mailbox.append("INBOX", message("premier"))
    assert door.run_once().stored == 1
    assert mailbox.messages("INBOX") == {first: {SEEN}}
    # Someone opens the next message in a mail client before the gateway sees it.
    second = mailbox.append("INBOX", message("second"), flags=(SEEN,))
    counts = door.run_once()
    assert (counts.stored, counts.known) == (1, 0)
    assert [r.source_key.rsplit(":", 1)[1] for r in rows(engine)] == [str(first), str(second)]
    assert door.run_once().stored == 0


def test_a_message_that_cannot_be_stored_stays_untouched_for_the_next_pass(
        settings, engine, mailbox, make_door) -> None:
    uid = mailbox.append("INBOX", message())
    door = make_door(imap_settings(settings, mailbox))
    with table_away(engine):
        counts = door.run_once()
    assert (counts.stored, counts.failed) == (0, 1)
    assert mailbox.messages("INBOX") == {uid: set()}  # not \Seen, not moved
    status = door_status(engine)
    assert (status["state"], status["consecutive_failures"]) == ("could not store", 1)
    assert status["last_error"].startswith("could not store INBOX")

    assert door.run_once().stored == 1
    assert mailbox.messages("INBOX") == {}
    assert len(rows(engine)) == 1
    assert door_status(engine)["consecutive_failures"] == 0


def test_a_message_over_the_size_limit_is_left_in_place_flagged_and_reported_once(
        settings, engine, mailbox, make_door, caplog) -> None:
    small = replace(settings, smtp=replace(settings.smtp, max_message_bytes=2000))
    big = mailbox.append("INBOX", message("énorme", size=3000))
    mailbox.append("INBOX", message("petit"))
    door = make_door(imap_settings(small, mailbox))

    counts = door.run_once()
    assert (counts.stored, counts.too_big) == (1, 1)
    assert mailbox.messages("INBOX") == {big: {b"$GatewayTooBig"}}
    assert door.run_once().too_big == 1
    # A gateway started later does not report it again either: the flag says it was.
    assert make_door(imap_settings(small, mailbox)).run_once().too_big == 1
    reports = [r for r in caplog.records if "over the 2000-byte limit" in r.getMessage()]
    assert len(reports) == 1 and reports[0].levelno == logging.WARNING
    [report] = door_status(engine)["too_big"]
    assert (report["folder"], report["uid"]) == ("INBOX", big) and report["size"] > 3000
    assert len(rows(engine)) == 1


def test_a_changed_uidvalidity_resynchronises_without_duplicates(settings, engine, mailbox, make_door) -> None:
    door = make_door(imap_settings(settings, mailbox, folders=("Support",), processed_folder=""))
    known = message("déjà reçu")
    mailbox.append("Support", known)
    assert door.run_once().stored == 1
    before = mailbox.uidvalidity("Support")
    # The folder is recreated (a migration, a restore): same message, new UIDVALIDITY, unseen.
    with mailbox.client() as client:
        client.delete_folder("Support")
        client.create_folder("Support")
    mailbox.append("Support", known)
    mailbox.append("Support", message("nouveau"))
    assert mailbox.uidvalidity("Support") != before

    counts = door.run_once()
    assert (counts.stored, counts.known) == (1, 1)
    assert [r.outcome for r in rows(engine)] == [Disposition.PENDING, Disposition.PENDING]  # no duplicate row
    assert all(flags == {SEEN} for flags in mailbox.messages("Support").values())


def test_one_pass_reads_every_folder_and_a_missing_folder_is_a_clear_error(
        settings, engine, mailbox, make_door) -> None:
    mailbox.append("INBOX", message("boîte"))
    mailbox.append("Support", message("dossier"))
    door = make_door(imap_settings(settings, mailbox, folders=("INBOX", "Support")))
    assert door.run_once().stored == 2
    assert [r.source_key.split(":")[3] for r in rows(engine)] == ["INBOX", "Support"]

    with pytest.raises(IMAPClient.Error):
        make_door(imap_settings(settings, mailbox, folder="Absent")).run_once()
    status = door_status(engine)
    assert status["state"] == "server refused" and "Absent" in status["last_error"]


def test_two_doors_reading_one_mailbox_store_each_message_once(settings, engine, mailbox, make_door) -> None:
    raws = [message(f"n°{i}") for i in range(12)]
    for raw in raws:
        mailbox.append("INBOX", raw)
    doors = [make_door(imap_settings(settings, mailbox)) for _ in range(2)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def read(door: ImapDoor) -> None:
        # Each gateway makes passes until the mailbox is empty; a pass that could not
        # store (SQLite refuses a second writer at times) leaves its messages for the next.
        try:
            start.wait(10)
            deadline = time.monotonic() + 20
            while mailbox.messages("INBOX") and time.monotonic() < deadline:
                door.run_once()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(door,)) for door in doors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    stored = rows(engine)
    assert sorted(r.raw for r in stored) == sorted(raws)
    assert {r.outcome for r in stored} == {Disposition.PENDING}  # no copy for the pipeline to ignore
    assert mailbox.messages("INBOX") == {}
    assert len(mailbox.messages(PROCESSED)) == 12


def test_a_message_another_gateway_is_filing_is_left_to_it_until_its_claim_expires(
        settings, engine, mailbox, make_door) -> None:
    raw = message("déjà pris")
    uid = mailbox.append("INBOX", raw)
    key = f"imap:127.0.0.1:{mailbox.user}:INBOX:{mailbox.uidvalidity('INBOX')}:{uid}"
    row = intake.store(engine, raw, door="imap", source_key=key).id

    def held_until(until: dt.datetime | None) -> None:
        with session_scope(engine) as session:
            session.execute(update(InboundMessage).where(InboundMessage.id == row).values(filing_until=until))

    # Another gateway stored it and is moving it: this one leaves it alone.
    held_until(utcnow() + dt.timedelta(minutes=1))
    door = make_door(imap_settings(settings, mailbox))
    assert door.run_once().known == 1
    assert mailbox.messages("INBOX") == {uid: set()}
    # That gateway died while moving it: once its claim is stale, this one files it.
    held_until(utcnow() - dt.timedelta(seconds=1))
    assert door.run_once().known == 1
    assert mailbox.messages("INBOX") == {}
    assert [flags for flags in mailbox.messages(PROCESSED).values()] == [{SEEN}]
    assert [r.filing_until for r in rows(engine)] == [None]  # released after the move


# -- the running door -------------------------------------------------------------------------

def test_the_running_door_wakes_on_new_mail_and_the_same_message_twice_opens_one_case(
        settings, loaded, mailbox, make_door) -> None:
    # Polling every 5 minutes: only IDLE can bring the message in within seconds.
    door_settings = imap_settings(settings, mailbox, idle_seconds=300, poll_seconds=300)
    worker = Loop("pipeline", lambda: process_pending(loaded, door_settings, lambda: None), 5.0)
    worker.start()
    door = make_door(door_settings, on_stored=lambda _id: worker.wake.set())
    try:
        door.start()
        until(lambda: door_status(loaded).get("state") == "idle", what="the door in IDLE")
        opening = mail(CLAIRE, "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE 2] Impression impossible")
        raw = opening.as_bytes(policy=opening.policy.clone(linesep="\r\n"))
        mailbox.append("INBOX", raw)
        mailbox.append("INBOX", raw)
        until(lambda: [r.outcome for r in rows(loaded)] in ([Disposition.CREATED, Disposition.IGNORED], [Disposition.IGNORED, Disposition.CREATED]),
              what="one case opened and one duplicate ignored")
        with session_scope(loaded) as session:
            [case] = session.scalars(select(Case)).all()
            assert case.title == "Impression impossible"
        until(lambda: mailbox.messages("INBOX") == {}, what="both messages moved")
        stopping = time.monotonic()
        door.stop()
        assert time.monotonic() - stopping < 3  # IDLE does not hold the door
        assert door_status(loaded)["state"] == "stopped"
    finally:
        worker.stop()


def test_the_door_reconnects_with_growing_delays_after_a_server_restart(
        settings, engine, own_server, make_door, caplog) -> None:
    server = own_server()
    mailbox = server.add_user()
    door = make_door(imap_settings(settings, mailbox))
    door.start()
    until(lambda: door_status(engine).get("state") == "idle", what="the door in IDLE")
    mailbox.append("INBOX", message("avant"))
    until(lambda: len(rows(engine)) == 1, what="the first message")

    server.stop()
    until(lambda: door_status(engine).get("consecutive_failures", 0) >= 3, what="three failed attempts")
    status = door_status(engine)
    assert status["state"] == "connection failed" and status["next_attempt_at"]
    server.start()
    until(lambda: door_status(engine).get("state") == "idle", what="the door back in IDLE")
    mailbox.append("INBOX", message("après"))
    until(lambda: len(rows(engine)) == 2, what="the message sent after the restart")
    until(lambda: door_status(engine).get("consecutive_failures") == 0, what="the status to recover")

    failures = [r for r in caplog.records if r.name == imap.__name__]
    assert len(failures) >= 3 and not any(r.exc_info for r in failures)
    delays = [float(d) for d in re.findall(r"next attempt in ([\d.]+) s", caplog.text)]
    assert delays[:3] == [0.05, 0.1, 0.2]


def test_a_connection_cut_during_fetch_leaves_the_message_for_the_next_pass(
        settings, engine, mailbox, make_door) -> None:
    relay = CutRelay(free_port(), mailbox.server.port)
    try:
        door = make_door(imap_settings(settings, mailbox, port=relay.port))
        uid = mailbox.append("INBOX", message("coupé", size=200_000))
        relay.cut_after(b"BODY[]")
        with pytest.raises((OSError, IMAPClient.Error)):
            door.run_once()
        assert relay.cuts == 1
        assert rows(engine) == []
        assert mailbox.messages("INBOX") == {uid: set()}
        assert door.run_once().stored == 1

        # The running door: the cut is one failure, the next attempt takes the message.
        relay.cut_after(b"BODY[]")
        door.start()
        until(lambda: door_status(engine).get("state") == "idle", what="the door in IDLE")
        mailbox.append("INBOX", message("coupé aussi", size=200_000))
        until(lambda: len(rows(engine)) == 2, what="the second message")
        assert relay.cuts == 2
        until(lambda: mailbox.messages("INBOX") == {}, what="the message moved")
        assert "connection failed or lost" in door_status(engine)["last_error"]
    finally:
        door.stop()
        relay.close()


def test_a_wrong_password_is_one_clear_line_per_attempt_with_growing_delays(
        settings, engine, mailbox, make_door, caplog) -> None:
    door = make_door(imap_settings(settings, mailbox, password="wrong"))
    door.start()
    until(lambda: door_status(engine).get("consecutive_failures", 0) >= 4, what="four refused logins")
    door.stop()

    status = door_status(engine)
    assert status["state"] == "stopped"
    assert status["last_error"] == "login refused: [AUTHENTICATIONFAILED] Authentication failed."
    lines = [r for r in caplog.records if r.name == imap.__name__]
    assert len(lines) >= 4
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in lines)
    assert all("login refused" in r.getMessage() for r in lines)
    assert not [r for r in caplog.records if r.exc_info]  # no traceback from anyone
    delays = [float(d) for d in re.findall(r"next attempt in ([\d.]+) s", caplog.text)]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.4]


def test_implicit_tls_and_starttls_with_the_servers_certificate(settings, engine, own_server, make_door) -> None:
    server = own_server(tls=True)
    mailbox = server.add_user()
    base = imap_settings(settings, mailbox)
    tls = replace(base.imap, ssl=True, port=server.tls_port, ca_file=str(server.certificate))

    mailbox.append("INBOX", message("tls"))
    assert make_door(replace(base, imap=tls)).run_once().stored == 1
    mailbox.append("INBOX", message("starttls"))
    starttls = replace(tls, ssl=False, starttls=True, port=server.port)
    assert make_door(replace(base, imap=starttls)).run_once().stored == 1

    untrusted = make_door(replace(base, imap=replace(tls, ca_file="")))
    with pytest.raises(OSError):
        untrusted.run_once()
    assert door_status(engine)["last_error"].startswith("server certificate not trusted")
    assert len(rows(engine)) == 2


# -- configuration ------------------------------------------------------------------------------

def test_folders_come_as_a_list_from_the_file_or_a_comma_separated_string_from_the_environment(
        tmp_path, monkeypatch) -> None:
    file = tmp_path / "gateway.toml"
    file.write_text('[imap]\nfolders = ["INBOX", "Support"]\n')
    assert config.load(file).imap.all_folders == ("INBOX", "Support")
    monkeypatch.setenv("GATEWAY_IMAP_FOLDERS", "Support, Clients ")
    assert config.load(file).imap.folders == ("Support", "Clients")
    file.write_text('[imap]\nfolder = "Support"\n')
    monkeypatch.delenv("GATEWAY_IMAP_FOLDERS")
    assert config.load(file).imap.all_folders == ("Support",)


def test_serve_with_the_imap_door_answers_mail_from_the_mailbox(settings, loaded, mailbox, relay) -> None:
    """The whole gateway as `serve` runs it, reading a mailbox instead of an SMTP door."""
    from harness import running

    gateway_settings = replace(
        imap_settings(settings, mailbox, idle_seconds=300, poll_seconds=300),
        smtp=replace(settings.smtp, enabled=False),
        outbound=replace(settings.outbound, transport="smtp", host="127.0.0.1",
                         port=relay.controller.port, poll_seconds=0.2))
    opening = mail(CLAIRE, "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE 2] Lecture par IMAP")
    with running(gateway_settings, loaded):
        until(lambda: door_status(loaded).get("state") == "idle", what="the door in IDLE")
        mailbox.append("INBOX", opening.as_bytes(policy=opening.policy.clone(linesep="\r\n")))
        [ack] = relay.wait_for(lambda got: any(r.rcpt == CLAIRE for r in got))[:1]
        # The door moves the message after storing it, possibly after the answer went out.
        until(lambda: mailbox.messages("INBOX") == {}, what="the message moved")
    assert ack.subject == "[Dossier #1] Lecture par IMAP"
