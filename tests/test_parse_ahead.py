"""A backlog parsed beside its writer (pipeline/ahead.py): the messages the writer decides
are read and parsed exactly as without the parsing process; whatever fails beside the
writer leaves the parsing to the writer, a message whose parsing raises is still held with
its reason, and the parsing process never outlives the writer."""
from __future__ import annotations

import subprocess
import sys
import time
from email.message import EmailMessage

from harness import CLAIRE, PAUL, mail
from sqlalchemy import select

from gateway import intake
from gateway.db import session_scope
from gateway.models import InboundMessage
from gateway.pipeline import ahead, parsing, reading, run
from gateway.receive import pipe

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"
REUSED = "<20261130.2@broken-mailer.example>"


def with_id(msg: EmailMessage, message_id: str = REUSED) -> EmailMessage:
    msg.replace_header("Message-ID", message_id)
    return msg


def backlog(engine) -> list[int]:
    """Stored messages of every kind: attachments, a reused Message-ID, a hopeless one."""
    raws = [mail(CLAIRE, f"{OPEN} {n}", f"Texte {n}.\n", attachments=[("a.txt", b"x" * n, "text/plain")])
            .as_bytes() for n in range(1, 8)]
    raws += [with_id(mail(CLAIRE, OPEN)).as_bytes(), with_id(mail(PAUL, OPEN, "Autre.\n")).as_bytes(),
             b"\x00\x01 not a message", b""]
    return [s.id for s in intake.store_many(engine, raws, "pipe")]


def test_messages_parsed_beside_are_read_as_in_the_writer(loaded) -> None:
    ids = backlog(loaded)
    with ahead.Parser() as parser:
        parser.start()
        parser.prefetch(loaded, ids)
        beside = parser.read(loaded, ids)
    assert beside == reading.read(loaded, ids)
    assert beside[8].notes[-1].startswith("reuses the Message-ID of message")


def test_a_batch_not_read_ahead_is_read_by_the_writer(loaded) -> None:
    ids = backlog(loaded)
    with ahead.Parser() as parser:
        parser.start()
        parser.prefetch(loaded, ids[:3])
        assert parser.read(loaded, ids[3:]) == reading.read(loaded, ids[3:])
        assert parser._ahead  # still there for its turn
        assert parser.read(loaded, ids[:3]) == reading.read(loaded, ids[:3])
        assert not parser._ahead


def test_what_is_ahead_stays_within_a_group(loaded, monkeypatch) -> None:
    ids = backlog(loaded)
    monkeypatch.setattr(ahead, "BATCH_BYTES", sum(r.size for r in reading.read(loaded, ids[:6])))
    with ahead.Parser() as parser:
        parser.start()
        for batch in (ids[:3], ids[3:6], ids[6:]):
            parser.prefetch(loaded, batch)
        assert [group for group, _, _ in parser._ahead] == [ids[:3], ids[3:6]]
        for batch in (ids[:3], ids[3:6], ids[6:]):
            assert parser.read(loaded, batch) == reading.read(loaded, batch)


def test_a_parsing_process_that_died_leaves_the_parsing_to_the_writer(loaded) -> None:
    ids = backlog(loaded)
    with ahead.Parser() as parser:
        parser.start()
        assert parser._process is not None
        parser._process.kill()
        parser._process.wait()
        parser.prefetch(loaded, ids)
        assert parser.read(loaded, ids) == reading.read(loaded, ids)


def test_a_message_whose_parsing_raises_is_held_with_its_reason(loaded, settings, monkeypatch) -> None:
    ids = backlog(loaded)[:2]
    broken = reading.fetch(loaded, ids[:1])[0].raw

    def parse(raw: bytes):
        if raw == broken:
            raise ValueError("a parser bug")
        return real(raw)
    real = reading.parse
    monkeypatch.setattr(reading, "parse", parse)
    monkeypatch.setattr(parsing, "parse", parse)
    assert parsing.parse_all([broken, b""]) == [None, real(b"")]
    # The process parses with the real parser: give the writer what parse_all gives here.
    monkeypatch.setattr(ahead, "_exchange", lambda _requests, _answers, raws: parsing.parse_all(raws))
    with ahead.Parser() as parser:
        parser.start()
        parser.prefetch(loaded, ids)
        outcomes = run.process_many(loaded, settings, ids, reader=parser.read)
    assert [o.outcome for o in outcomes] == ["held", "created"]
    assert outcomes[0].reasons[0] == "unexpected error: ValueError: a parser bug"
    with session_scope(loaded) as session:
        error = session.scalar(select(InboundMessage.error).where(InboundMessage.id == ids[0]))
    assert "raise ValueError" in error  # the traceback of the parse itself


def test_a_backlog_is_stored_then_processed_with_the_parsing_process(loaded, settings, tmp_path,
                                                                    monkeypatch) -> None:
    folder = tmp_path / "backlog"
    folder.mkdir()
    count = pipe.BATCH * 2 + 5
    for n in range(count):
        (folder / f"{n:04}.eml").write_bytes(mail(CLAIRE, f"{OPEN} {n}").as_bytes())
    beside: list[int] = []
    read = ahead.Parser.read

    def counted(parser: ahead.Parser, engine, ids: list[int]) -> list[reading.Read]:
        beside.extend(ids if parser._ahead and parser._ahead[0][0] == ids else [])
        return read(parser, engine, ids)
    monkeypatch.setattr(ahead.Parser, "read", counted)
    delivery = pipe.Delivery()
    pipe.ingest(lambda: (settings, loaded), [str(folder)], delivery)
    assert delivery.status == 0 and not delivery.line
    assert len(beside) == count  # every batch was parsed beside the writer
    with session_scope(loaded) as session:
        assert list(session.scalars(select(InboundMessage.outcome))) == ["created"] * count


def test_the_parsing_process_ends_with_its_writer(tmp_path) -> None:
    script = ("import os, sys; from gateway.pipeline import ahead; p = ahead.Parser(); p.start(); "
              "print(p._process.pid, flush=True); os._exit(0)")
    writer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    pid = int(writer.stdout)
    deadline = time.monotonic() + 30
    while _running(pid):
        assert time.monotonic() < deadline, "the parsing process outlived its writer"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Whether `pid` runs (an exited process nobody reaped yet is a zombie: not running)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
