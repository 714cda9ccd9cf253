"""The pipe door behind `gateway ingest`: read raw messages from stdin, files or folders.

An MTA pipes one message to standard input, with its envelope on the command line; an
operator replays a backlog from files, a folder of `.eml` files or a Maildir. Each message
is stored as it is read, then processed. How the command ends (its exit status whatever
happens) is `pipe_exit`'s business.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from gateway import intake
from gateway.config import Settings
from gateway.pipeline import ahead
from gateway.pipeline import run as pipeline
from gateway.receive.pipe_exit import Delivery, reason

log = logging.getLogger(__name__)
BATCH = 50  # messages stored, then processed, per transaction when replaying a folder
AHEAD = 2  # batches parsed ahead of the one being decided (a busy machine may slow the parser)

STDIN = "<stdin>"
# What Postfix's pipe(8) puts for the null sender in ${sender} unless told otherwise
# (null_sender=): a real sender always has a domain by then, so this one cannot be a person.
POSTFIX_NULL_SENDER = "mailer-daemon"


@dataclass(frozen=True)
class Envelope:
    """The envelope of the message on standard input, as the MTA gives it: the sender
    ("" for the null sender, None when not given) and the recipients."""
    sender: str | None = None
    recipients: tuple[str, ...] = ()

    @classmethod
    def given(cls, sender: str | None, recipients: Iterable[str]) -> Envelope:
        """The envelope from the command line; Postfix's bare `MAILER-DAEMON` (and `<>`)
        is the null sender, stored as "" like the SMTP door stores `MAIL FROM:<>`."""
        if sender is not None:
            sender = sender.strip()
            if sender.lower() in (POSTFIX_NULL_SENDER, "<>"):
                sender = ""
        return cls(sender, tuple(r.strip() for r in recipients if r.strip()))


def read_sources(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (label, raw) for standard input when `paths` is empty, else for each path.

    A folder gives its regular files in name order, recursively, hidden ones skipped; a
    Maildir (cur/, new/, tmp/) gives the messages of new/ then cur/. Raises
    FileNotFoundError before reading anything when a path does not exist.
    """
    if not paths:
        yield STDIN, sys.stdin.buffer.read()
        return
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    for path in map(Path, paths):
        for file in _message_files(path) if path.is_dir() else [path]:
            yield str(file), file.read_bytes()


def _message_files(folder: Path) -> Iterator[Path]:
    if all((folder / sub).is_dir() for sub in ("cur", "new", "tmp")):
        # tmp/ holds deliveries in progress: they are not messages yet.
        for sub in ("new", "cur"):
            yield from sorted(p for p in (folder / sub).iterdir()
                              if p.is_file() and not p.name.startswith("."))
        return
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _message_files(entry)
        elif entry.is_file():
            yield entry


def store_all(engine: Engine, sources: Iterable[tuple[str, bytes]], door: str = "pipe",
              batch_size: int = BATCH, backlog: Callable[[], None] = lambda: None) -> tuple[list[int], list[str]]:
    """Store each message; return the stored ids and the labels that could not be stored.

    A message that fails is logged and skipped, never raised, so one bad moment does not
    stop a backlog; the caller decides the exit status from the failed labels.
    `backlog()` is called once, when a message follows a full batch (a backlog of more
    than one batch), as soon as it is read.
    """
    stored: list[int] = []
    failed: list[str] = []
    batch: list[tuple[str, bytes]] = []

    def flush() -> None:
        try:
            stored.extend(s.id for s in intake.store_many(engine, [raw for _, raw in batch], door))
        except Exception:  # noqa: BLE001 - retried one by one, so one bad message is named
            for label, raw in batch:
                try:
                    stored.append(intake.store(engine, raw, door=door).id)
                except Exception:
                    log.exception("could not store %s", label)
                    failed.append(label)
        batch.clear()

    full = 0
    for item in sources:
        if full == 1 and not batch:
            backlog()  # once: more than one batch follows
        batch.append(item)
        if len(batch) >= batch_size:
            full += 1
            flush()
    if batch:
        flush()
    return stored, failed


def ingest(connect: Callable[[], tuple[Settings, Engine]], paths: list[str],
           delivery: Delivery, envelope: Envelope = Envelope()) -> None:
    """Store the messages of `paths` (standard input when empty), then process them.

    `connect` gives the settings and an engine on an upgraded schema; standard input is
    read before it is called. `envelope` is stored with the message of standard input
    (files have none). `delivery` is marked stored once every message is committed; a
    message that could not be stored is named on its line and leaves the status at 75.
    A failure to process is logged and leaves the messages to `serve`: it never changes the
    status. Raises what prevents storing (`pipe_exit.run` makes it a 75). A backlog of more
    than one batch is parsed ahead in a process beside this one (`pipeline.ahead`).
    """
    with ahead.Parser() as parser:
        if paths:
            settings, engine = connect()
            ids, failed = store_all(engine, read_sources(paths), backlog=parser.start)
        else:
            [(_, raw)] = read_sources([])
            settings, engine = connect()
            ids, failed = [intake.store(engine, raw, door="pipe", envelope_from=envelope.sender,
                                        envelope_to=list(envelope.recipients)).id], []
        if failed:
            delivery.line = f"gateway: could not store {', '.join(failed)} (see the log)"
        else:
            delivery.stored()
        process_all(engine, settings, ids, delivery, parser)
    if paths:
        delivery.summary = f"{len(ids)} message(s) stored and processed"


def process_all(engine: Engine, settings: Settings, ids: list[int], delivery: Delivery,
                parser: ahead.Parser) -> None:
    """Process stored messages a batch at a time, each read and parsed while those before
    it are decided. A batch that fails is logged and named on the delivery's line."""
    batches = [ids[start:start + BATCH] for start in range(0, len(ids), BATCH)]
    ahead_of = 0  # batches[:ahead_of] were handed to the parser
    for index, batch in enumerate(batches):
        for later in batches[ahead_of:index + 1 + AHEAD]:  # this one and the next AHEAD
            parser.prefetch(engine, later)
        ahead_of = max(ahead_of, index + 1 + AHEAD)
        try:
            pipeline.process_many(engine, settings, batch, reader=parser.read)
        except Exception as exc:
            log.exception("messages %s..%s stored, processing deferred", batch[0], batch[-1])
            delivery.line = delivery.line or (f"gateway: messages {batch[0]}..{batch[-1]} stored, "
                                              f"processing deferred ({reason(exc)})")
