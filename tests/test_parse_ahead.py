"""A backlog read beside its writer (pipeline/ahead.py): the files the writer stores and
decides are read, keyed and parsed exactly as without the reading process; whatever fails
beside the writer leaves the reading to the writer (a file that cannot be read raises
there), a message whose parsing raises is still held with its reason, and the reading
process never outlives the writer."""
from __future__ import annotations

import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from harness import CLAIRE, PAUL, mail
from sqlalchemy import select

from gateway.db import session_scope
from gateway.keys import keys_of
from gateway.models import InboundMessage
from gateway.pipeline import ahead, parsing, reading
from gateway.pipeline.parse import parse
from gateway.pipeline.parsing import Item
from gateway.receive import pipe

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"
REUSED = "<20261130.2@broken-mailer.example>"


def with_id(msg: EmailMessage, message_id: str = REUSED) -> EmailMessage:
    msg.replace_header("Message-ID", message_id)
    return msg


def backlog(folder: Path) -> list[str]:
    """Files of every kind: attachments, a reused Message-ID, a copy, a hopeless one, an empty one."""
    raws = [mail(CLAIRE, f"{OPEN} {n}", f"Texte {n}.\n", attachments=[("a.txt", b"x" * n, "text/plain")])
            .as_bytes() for n in range(1, 8)]
    first = with_id(mail(CLAIRE, OPEN)).as_bytes()
    raws += [first, with_id(mail(PAUL, OPEN, "Autre.\n")).as_bytes(), b"Received: from mx2\n" + first,
             b"\x00\x01 not a message", b""]
    folder.mkdir()
    for n, raw in enumerate(raws):
        (folder / f"{n:03}.eml").write_bytes(raw)
    return [str(folder / f"{n:03}.eml") for n in range(len(raws))]


def read_here(files: list[str]) -> list[Item]:
    return [Item(f, raw, keys_of(raw), parse(raw)) for f in files for raw in [Path(f).read_bytes()]]


def test_files_read_beside_are_what_the_writer_reads(tmp_path) -> None:
    files = backlog(tmp_path / "backlog")
    with ahead.Reader(files, batch=5) as reader:
        reader.start()
        assert reader._process is not None
        batches = list(reader)
    assert [len(b) for b in batches] == [5, 5, 2]
    assert [i for b in batches for i in b] == read_here(files)


def test_a_backlog_of_one_batch_is_read_by_the_writer(tmp_path) -> None:
    files = backlog(tmp_path / "backlog")
    with ahead.Reader(files) as reader:
        reader.start()
        assert reader._process is None  # an interpreter is not worth it
        [batch] = list(reader)
    assert batch == [Item(i.label, i.raw, i.keys) for i in read_here(files)]  # parsed when decided


def test_what_is_ahead_stays_within_its_bytes(tmp_path, monkeypatch) -> None:
    files = backlog(tmp_path / "backlog")
    monkeypatch.setattr(ahead, "AHEAD_BYTES", sum(Path(f).stat().st_size for f in files[:5]))
    with ahead.Reader(files, batch=5) as reader:
        reader.start()
        assert [n for n, _ in reader._ahead] == [0]
        batches = iter(reader)
        assert next(batches) == read_here(files[:5])
        assert [n for n, _ in reader._ahead] == []  # the first batch is out: the next one was worth more
        assert next(batches) + next(batches) == read_here(files[5:])


def test_a_reading_process_that_died_leaves_the_reading_to_the_writer(tmp_path) -> None:
    files = backlog(tmp_path / "backlog")
    with ahead.Reader(files, batch=5) as reader:
        reader.start()
        assert reader._process is not None
        reader._process.kill()
        reader._process.wait()
        items = [i for b in reader for i in b]
    here = read_here(files)
    assert [(i.label, i.raw, i.keys) for i in items] == [(i.label, i.raw, i.keys) for i in here]
    assert items[5:] == [Item(i.label, i.raw, i.keys) for i in here[5:]]  # parsed when decided


def test_a_file_gone_before_it_is_read_fails_in_the_writer(tmp_path) -> None:
    files = backlog(tmp_path / "backlog")
    Path(files[7]).unlink()
    with ahead.Reader(files, batch=5) as reader:
        reader.start()
        batches = iter(reader)
        assert next(batches) == read_here(files[:5])
        with pytest.raises(FileNotFoundError):
            next(batches)


def test_a_backlog_is_stored_then_decided_as_without_the_reading_process(loaded, settings, tmp_path) -> None:
    files = backlog(tmp_path / "backlog")
    reader = ahead.Reader(files, batch=5)
    reader.start()
    delivery = pipe.Delivery()
    pipe.ingest(lambda: (settings, loaded), [str(tmp_path / "backlog")], delivery, reader=reader)
    assert delivery.status == 0 and not delivery.line
    assert delivery.summary == "12 message(s) stored and processed"
    with session_scope(loaded) as session:
        rows = session.execute(select(InboundMessage.id, InboundMessage.raw, InboundMessage.outcome,
                                      InboundMessage.reasons).order_by(InboundMessage.id)).all()
    assert [r.raw for r in rows] == [Path(f).read_bytes() for f in files]
    assert [r.outcome for r in rows] == ["created"] * 9 + ["ignored", "refused", "refused"]
    assert rows[8].reasons[-1] == f"reuses the Message-ID of message {rows[7].id} with other content"
    assert rows[9].reasons == [f"duplicate of message {rows[7].id}"]


def test_a_message_whose_parsing_raises_is_held_with_its_reason(loaded, settings, tmp_path, monkeypatch) -> None:
    files = backlog(tmp_path / "backlog")[:6]
    broken = Path(files[0]).read_bytes()

    def failing(raw: bytes):
        if raw == broken:
            raise ValueError("a parser bug")
        return parse(raw)
    monkeypatch.setattr(reading, "parse", failing)
    monkeypatch.setattr(parsing, "parse", failing)
    assert parsing.read_item(files[0]) == Item(files[0], broken, keys_of(broken))
    # The process parses with the real parser: give the writer what read_item gives here.
    monkeypatch.setattr(ahead, "_exchange", lambda _requests, _answers, labels: [parsing.read_item(f) for f in labels])
    reader = ahead.Reader(files, batch=3)
    reader.start()
    delivery = pipe.Delivery()
    pipe.ingest(lambda: (settings, loaded), files, delivery, reader=reader)
    with session_scope(loaded) as session:
        rows = session.execute(select(InboundMessage.outcome, InboundMessage.reasons, InboundMessage.error)
                               .order_by(InboundMessage.id)).all()
    assert [r.outcome for r in rows] == ["held"] + ["created"] * 5
    assert rows[0].reasons[0] == "unexpected error: ValueError: a parser bug"
    assert "raise ValueError" in rows[0].error  # the traceback of the parse itself


def test_the_reading_process_ends_with_its_writer(tmp_path) -> None:
    script = ("import os, sys; from gateway.pipeline import ahead; p = ahead.Reader(['a', 'b'], batch=1); "
              "p.start(); print(p._process.pid, flush=True); os._exit(0)")
    writer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    pid = int(writer.stdout)
    deadline = time.monotonic() + 30
    while _running(pid):
        assert time.monotonic() < deadline, "the reading process outlived its writer"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Whether `pid` runs (an exited process nobody reaped yet is a zombie: not running)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
