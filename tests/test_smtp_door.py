"""The SMTP/LMTP door over real sockets with smtplib, and the pipe door's readers."""
from __future__ import annotations

import gc
import io
import smtplib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import pytest
from harness import table_away
from sqlalchemy import Engine, func, select

from gateway.config import Settings
from gateway.db import one_writer, session_scope
from gateway.keys import keys_of
from gateway.models import Disposition, InboundMessage
from gateway.pipeline.parsing import Item
from gateway.receive import files, pipe, smtp

SUPPORT = "assistance@editeur.example"
CUSTOMER = "client@example.com"


def message(subject: str = "Impression impossible", size: int = 0) -> bytes:
    """A message with CRLF line ends, 8-bit text and a leading dot, so dot-stuffing shows."""
    lines = range(size // 72 + 1) if size else range(0)
    padding = "".join(f"ligne {i:04d} {'x' * 60}\r\n" for i in lines)
    return (f"From: Client <{CUSTOMER}>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\n\r\n"
            "Bonjour, l'édition ne marche plus.\r\n.point en début de ligne\r\n"
            f"{padding}").encode()


def rows(engine: Engine) -> list[InboundMessage]:
    with session_scope(engine) as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def queued_id(reply: bytes) -> int:
    assert reply.startswith(b"2.0.0 Ok: queued as "), reply
    return int(reply.rsplit(b" ", 1)[1])


# -- the running door --------------------------------------------------------------------

@dataclass
class RunningDoor:
    settings: Settings
    controller: smtp.DoorController
    woken: list[int] = field(default_factory=list)
    greeting: bytes = b""  # the text of the last 220 this door sent to connect()

    def connect(self) -> smtplib.SMTP:
        """A client that has read the greeting and said EHLO (LHLO in LMTP)."""
        client = smtplib.LMTP(timeout=30) if self.settings.smtp.lmtp else smtplib.SMTP(timeout=30)
        code, self.greeting = client.connect(self.settings.smtp.host, self.settings.smtp.port)
        assert code == 220
        assert client.ehlo()[0] == 250
        return client


@pytest.fixture(params=["smtp", "lmtp"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start_door(settings: Settings, engine: Engine, free_port: Callable[[], int],
               protocol: str) -> Iterator[Callable[..., RunningDoor]]:
    """Start the door on a free loopback port: `start_door(max_message_bytes=1000)`."""
    running: list[RunningDoor] = []

    def start(**smtp_changes: object) -> RunningDoor:
        changes = {"host": "127.0.0.1", "port": free_port(), "lmtp": protocol == "lmtp"}
        door_settings = replace(settings, smtp=replace(settings.smtp, **changes | smtp_changes))
        woken: list[int] = []
        door = RunningDoor(door_settings, smtp.start(door_settings, engine, woken.append), woken)
        running.append(door)
        return door

    yield start
    for door in running:
        door.controller.stop()


def transaction(client: smtplib.SMTP, raw: bytes, recipients: tuple[str, ...] = (SUPPORT,),
                sender: str = CUSTOMER) -> list[tuple[int, bytes]]:
    """MAIL, RCPT, DATA; the DATA replies: one in SMTP, one per accepted recipient in LMTP."""
    assert client.mail(sender)[0] == 250
    accepted = [r for r in recipients if client.rcpt(r)[0] == 250]
    replies = [client.data(raw)]
    if isinstance(client, smtplib.LMTP):
        replies += [client.getreply() for _ in accepted[1:]]
    return replies


# -- SMTP and LMTP -----------------------------------------------------------------------

def test_message_is_stored_byte_for_byte_before_250(start_door, engine) -> None:
    door = start_door()
    raw = message()
    with door.connect() as client:
        [(code, reply)] = transaction(client, raw)
    assert code == 250
    stored_id = queued_id(reply)
    [row] = rows(engine)
    assert (row.id, row.raw, row.size) == (stored_id, raw, len(raw))
    assert row.door == ("lmtp" if door.settings.smtp.lmtp else "smtp")
    assert (row.envelope_from, row.envelope_to, row.outcome) == (CUSTOMER, [SUPPORT], Disposition.PENDING)
    assert door.woken == [stored_id]


def test_greeting_names_the_support_domain_and_offers_no_auth(start_door) -> None:
    door = start_door()
    with door.connect() as client:
        assert door.greeting.startswith(b"editeur.example ")
        assert client.has_extn("8bitmime") and client.has_extn("size")
        assert not client.has_extn("auth")


def test_only_the_support_address_and_its_token_forms_are_accepted(start_door, engine) -> None:
    door = start_door()
    with door.connect() as client:
        assert client.mail(CUSTOMER)[0] == 250
        assert client.rcpt("someone@editeur.example") == (
            550, b"5.1.1 <someone@editeur.example>: no such mailbox here")
        assert client.rcpt("assistance@other.example")[0] == 550
        assert client.rcpt("assistance-x@editeur.example")[0] == 550
        assert client.rcpt("assistance+abc123@editeur.example")[0] == 250
        assert client.rcpt("ASSISTANCE@Editeur.Example")[0] == 250
        replies = [client.data(message())]
        if door.settings.smtp.lmtp:
            replies.append(client.getreply())
        assert [code for code, _ in replies] == [250] * len(replies)
    [row] = rows(engine)
    assert row.envelope_to == ["assistance+abc123@editeur.example", "ASSISTANCE@Editeur.Example"]


def test_message_over_the_limit_gets_552_and_nothing_is_stored(start_door, engine) -> None:
    door = start_door(max_message_bytes=2000)
    big = message(size=3000)
    with door.connect() as client:
        # Without SIZE on MAIL FROM, the server counts while receiving.
        replies = transaction(client, big, recipients=(SUPPORT, "assistance+x@editeur.example"))
        assert [code for code, _ in replies] == [552] * (2 if door.settings.smtp.lmtp else 1)
        assert client.noop()[0] == 250  # no reply left unread: the session goes on
        # With SIZE (smtplib adds it when offered), MAIL FROM itself is refused.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail(CUSTOMER, [SUPPORT], big)
        assert refused.value.smtp_code == 552
        client.rset()
        [(code, _)] = transaction(client, message())
        assert code == 250
    [row] = rows(engine)
    assert row.size < 2000


def test_store_failure_answers_451_and_the_door_keeps_running(start_door, engine) -> None:
    door = start_door()
    two = (SUPPORT, "assistance+y@editeur.example")
    with door.connect() as client:
        with table_away(engine):
            replies = transaction(client, message(), recipients=two)
        assert replies == [(451, b"4.3.0 Temporary failure, please try again later")] * (
            2 if door.settings.smtp.lmtp else 1)
        assert door.woken == []
        # The same session goes on once the database is back, and so do new ones.
        [(code, _), *_] = transaction(client, message(), recipients=two)
        assert code == 250
    with door.connect() as client:
        [(code, _)] = transaction(client, message())
        assert code == 250
    assert len(rows(engine)) == 2
    assert door.woken == [row.id for row in rows(engine)]


def test_same_message_twice_is_stored_twice_the_second_as_duplicate(start_door, engine) -> None:
    door = start_door()
    raw = message()
    with door.connect() as client:
        [(first_code, first)] = transaction(client, raw)
        [(second_code, second)] = transaction(client, raw)
    assert (first_code, second_code) == (250, 250)
    original, duplicate = rows(engine)
    assert (original.id, duplicate.id) == (queued_id(first), queued_id(second))
    assert (original.outcome, original.duplicate_of) == (Disposition.PENDING, None)
    assert (duplicate.outcome, duplicate.duplicate_of) == (Disposition.IGNORED, original.id)
    assert duplicate.raw == raw
    assert door.woken == [original.id, duplicate.id]


def test_null_sender_is_accepted_and_stored_with_an_empty_envelope_from(start_door, engine) -> None:
    door = start_door()
    with door.connect() as client:
        [(code, _)] = transaction(client, message(), sender="")
    assert code == 250
    [row] = rows(engine)
    assert row.envelope_from == ""


@pytest.mark.parametrize("protocol", ["lmtp"], indirect=True)
def test_lmtp_answers_each_accepted_recipient_and_stores_once(start_door, engine) -> None:
    door = start_door()
    recipients = ("assistance+a1@editeur.example", "nobody@editeur.example", SUPPORT)
    with door.connect() as client:
        replies = transaction(client, message(), recipients=recipients)
        assert [code for code, _ in replies] == [250, 250]
        assert replies[0] == replies[1]
        assert client.noop()[0] == 250  # and not a third DATA reply
    [row] = rows(engine)
    assert (row.door, row.envelope_to) == ("lmtp", ["assistance+a1@editeur.example", SUPPORT])


def test_a_taken_port_raises_and_leaks_nothing(start_door, engine) -> None:
    door = start_door()
    with pytest.raises(OSError):
        smtp.start(door.settings, engine, door.woken.append)
    gc.collect()  # an event loop left open would warn here, within this test
    with door.connect() as client:
        assert client.noop()[0] == 250


def test_stop_hangs_up_on_open_sessions(start_door) -> None:
    door = start_door()
    client = door.connect()
    door.controller.stop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    client.close()
    gc.collect()  # a socket left open by the server would warn here, within this test


# -- the pipe door -----------------------------------------------------------------------

def test_read_sources_reads_standard_input_when_no_path(monkeypatch) -> None:
    raw = message()
    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=io.BytesIO(raw)))
    assert list(files.read_sources([])) == [("<stdin>", raw)]


def test_read_sources_reads_a_file(tmp_path) -> None:
    path = tmp_path / "one.eml"
    path.write_bytes(b"Subject: one\n\nbody\n")
    assert list(files.read_sources([str(path)])) == [(str(path), b"Subject: one\n\nbody\n")]


def test_read_sources_walks_a_folder_in_name_order_skipping_hidden(tmp_path) -> None:
    for name in ("b.eml", "a.eml", "sub/c.eml", ".hidden", ".cache/d.eml", "z/.e.eml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    labels = [label for label, _ in files.read_sources([str(tmp_path)])]
    assert labels == [str(tmp_path / n) for n in ("a.eml", "b.eml", "sub/c.eml")]


def test_read_sources_reads_new_then_cur_of_a_maildir(tmp_path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    for name in ("new/2", "new/1", "cur/0:2,S", "tmp/in-progress", "new/.hidden"):
        (tmp_path / name).write_bytes(name.encode())
    raws = [raw for _, raw in files.read_sources([str(tmp_path)])]
    assert raws == [b"new/1", b"new/2", b"cur/0:2,S"]


def test_read_sources_refuses_a_missing_path_before_reading(tmp_path) -> None:
    (tmp_path / "here.eml").write_bytes(b"x")
    with pytest.raises(FileNotFoundError):
        next(files.read_sources([str(tmp_path / "here.eml"), str(tmp_path / "gone.eml")]))


def items(sources: Iterable[tuple[str, bytes]]) -> list[Item]:
    return [Item(label, raw, keys_of(raw)) for label, raw in sources]


def test_store_batch_stores_a_folder(tmp_path, engine) -> None:
    folder = tmp_path / "backlog"
    folder.mkdir()
    raws = [message(f"n°{i}") for i in range(3)]
    for i, raw in enumerate(raws):
        (folder / f"{i}.eml").write_bytes(raw)
    stored, failed = pipe.store_batch(engine, items(files.read_sources([str(folder)])))
    assert failed == []
    assert [(r.id, r.raw, r.door) for r in rows(engine)] == [
        (row.id, raw, "pipe") for (_, row), raw in zip(stored, raws, strict=True)]


def test_store_batch_stores_one_by_one_and_names_what_it_could_not_store(engine, caplog) -> None:
    batch = items([("first", message()), ("second", message()), ("third", message())])
    with table_away(engine):
        stored, failed = pipe.store_batch(engine, batch)
    assert stored == [] and failed == ["first", "second", "third"]
    assert "could not store second" in caplog.text
    stored, failed = pipe.store_batch(engine, batch)
    assert [item for item, _ in stored] == batch and failed == []
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == 3


def test_concurrent_sessions_are_each_stored_once_and_a_copy_is_a_duplicate(start_door, engine) -> None:
    """Twenty sessions at once (the door stores what arrives during a commit together):
    every one gets its 250 with its own row, and two copies of one message make one
    message and one duplicate, whichever group each fell in."""
    door = start_door()
    raws = [f"From: c{i}@example.com\r\nTo: {SUPPORT}\r\nSubject: n{i}\r\nMessage-ID: <n{i}@x>\r\n\r\nBody {i}\r\n"
            .encode() for i in range(18)]
    copy = f"From: {CUSTOMER}\r\nTo: {SUPPORT}\r\nSubject: twice\r\nMessage-ID: <twice@x>\r\n\r\nSame\r\n".encode()
    raws += [copy, b"Received: from mx2\r\n" + copy]
    replies: dict[int, list[tuple[int, bytes]]] = {}
    start = threading.Barrier(len(raws))

    def one(i: int) -> None:
        client = door.connect()
        start.wait()
        replies[i] = transaction(client, raws[i])
        client.quit()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(raws))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(code == 250 for r in replies.values() for code, _ in r) and len(replies) == len(raws)
    with session_scope(engine) as session:
        rows = session.execute(select(InboundMessage.raw, InboundMessage.duplicate_of)).all()
    assert sorted(raw for raw, _ in rows) == sorted(raws)
    assert sum(dup is not None for _, dup in rows) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the writers' line is SQLite's
def test_while_another_process_writes_the_door_serves_other_sessions(start_door, engine) -> None:
    """On SQLite the door waits for its turn in the writers' line (another process writing:
    here, the test holding it) without stopping its event loop: another session is greeted
    and served meanwhile, its new transaction waiting at MAIL FROM until the message
    received before it is committed; then both go through, in the order they came."""
    door = start_door()
    raw, other_raw, replies, other_replies = message("En attente"), message("Ensuite"), [], []
    mail_answered = threading.Event()

    def send() -> None:
        with door.connect() as client:
            replies.extend(transaction(client, raw))

    def send_other(other: smtplib.SMTP) -> None:
        assert other.mail(CUSTOMER)[0] == 250
        mail_answered.set()
        assert other.rcpt(SUPPORT)[0] == 250
        other_replies.append(other.data(other_raw))

    with one_writer(engine):
        sender = threading.Thread(target=send)
        sender.start()
        wait_for(lambda: door.controller.handler.writer.waiting)  # the message is in, waiting for the line
        started = time.monotonic()
        other = door.connect()
        assert other.noop()[0] == 250 and other.rset()[0] == 250
        assert time.monotonic() - started < 1.0
        later = threading.Thread(target=send_other, args=(other,))
        later.start()
        assert not mail_answered.wait(0.5)  # MAIL FROM waits for the message before it
        assert not replies and rows(engine) == []
    sender.join(10)
    later.join(10)
    other.quit()
    [(code, reply)] = replies
    [(other_code, other_reply)] = other_replies
    assert code == 250 and other_code == 250
    assert [r.raw for r in rows(engine)] == [raw, other_raw]
    assert [r.id for r in rows(engine)] == [queued_id(reply), queued_id(other_reply)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_new_transaction_waits_at_mail_from_for_a_bounded_time(start_door, engine, monkeypatch) -> None:
    """Should the line stay taken, MAIL FROM is answered after `ROOM_SECONDS` and the
    transaction goes on; its message then waits for the line after its data, as any."""
    from gateway.receive import group
    monkeypatch.setattr(group, "ROOM_SECONDS", 0.3)
    door = start_door()
    raw, other_raw, replies, other_replies = message("En attente"), message("Ensuite"), [], []

    def send(raw: bytes, into: list[tuple[int, bytes]]) -> None:
        with door.connect() as client:
            into.extend(transaction(client, raw))

    with one_writer(engine):
        first = threading.Thread(target=send, args=(raw, replies))
        first.start()
        wait_for(lambda: door.controller.handler.writer.waiting)
        started = time.monotonic()
        second = threading.Thread(target=send, args=(other_raw, other_replies))
        second.start()
        wait_for(lambda: len(door.controller.handler.writer.waiting) == 2)  # past MAIL FROM, its data in
        assert 0.25 < time.monotonic() - started < 5
        assert not replies and not other_replies and rows(engine) == []
    first.join(10)
    second.join(10)
    assert [code for code, _ in replies + other_replies] == [250, 250]
    assert sorted(r.raw for r in rows(engine)) == sorted([raw, other_raw])


def wait_for(condition: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


def test_the_door_on_sqlite_shortens_the_switch_interval_while_it_is_open(start_door, engine) -> None:
    """Its store thread gets the interpreter back from the busy loop within 0.5 ms
    (receive/group.py); the process's own interval comes back when the door stops."""
    import sys
    before = sys.getswitchinterval()
    door = start_door()
    sqlite = engine.dialect.name == "sqlite"
    assert sys.getswitchinterval() == (smtp.STORE_SWITCH_SECONDS if sqlite else before)
    door.controller.stop()
    assert sys.getswitchinterval() == before
