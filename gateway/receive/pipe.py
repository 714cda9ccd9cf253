"""The pipe door behind `gateway ingest`: read raw messages from stdin, files or folders.

An MTA pipes one message to standard input, with its envelope on the command line; an
operator replays a backlog from files, a folder of `.eml` files or a Maildir. Each message
is stored as it is read, then processed. How the command ends (its exit status whatever
happens) is `pipe_exit`'s business.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from gateway import intake
from gateway.config import Settings
from gateway.db import read_scope
from gateway.intake import Stored
from gateway.pipeline import ahead
from gateway.pipeline import run as pipeline
from gateway.pipeline.parsing import Item
from gateway.pipeline.reading import Read, parsed_read, read
from gateway.receive.files import message_files, read_sources
from gateway.receive.pipe_exit import Delivery, reason

log = logging.getLogger(__name__)
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


def store_batch(engine: Engine, items: list[Item], door: str = "pipe") -> tuple[list[tuple[Item, Stored]], list[str]]:
    """Store a batch of messages in one transaction, or one by one should that fail; return
    each stored message with its row, and the labels of those that could not be stored.

    A message that fails is logged and skipped, never raised, so one bad moment does not
    stop a backlog; the caller decides the exit status from the failed labels.
    """
    try:
        return list(zip(items, intake.store_many(engine, [i.raw for i in items], door, [i.keys for i in items]),
                        strict=True)), []
    except Exception:  # noqa: BLE001 - retried one by one, so one bad message is named
        pass
    stored: list[tuple[Item, Stored]] = []
    failed: list[str] = []
    for item in items:
        try:
            stored.append((item, intake.store(engine, item.raw, door=door)))
        except Exception:
            log.exception("could not store %s", item.label)
            failed.append(item.label)
    return stored, failed


def ingest(connect: Callable[[], tuple[Settings, Engine]], paths: list[str], delivery: Delivery,
           envelope: Envelope = Envelope(), reader: ahead.Reader | None = None) -> None:
    """Store the messages of `paths` (standard input when empty), then process them.

    `connect` gives the settings and an engine on an upgraded schema; standard input is
    read before it is called. `envelope` is stored with the message of standard input
    (files have none). `delivery` is marked stored once every message is committed; a
    message that could not be stored is named on its line and leaves the status at 75.
    A failure to process is logged and leaves the messages to `serve`: it never changes the
    status. Raises what prevents storing (`pipe_exit.run` makes it a 75).

    Files are stored and processed a batch at a time, in order: each batch is stored in one
    transaction, then decided, while the next ones are read and parsed beside (`reader`, the
    command's own when it started one early, see `ahead`).
    """
    if not paths:
        [(_, raw)] = read_sources([])
        settings, engine = connect()
        inbound = intake.store(engine, raw, door="pipe", envelope_from=envelope.sender,
                               envelope_to=list(envelope.recipients))
        delivery.stored()
        _process(engine, settings, [inbound.id], delivery)
        return
    with reader or ahead.Reader(message_files(paths)) as backlog:
        backlog.start()
        settings, engine = connect()
        count, failed = 0, list[str]()
        for items in backlog:
            stored, unstored = store_batch(engine, items)
            count, failed = count + len(stored), failed + unstored
            _process(engine, settings, [row.id for _, row in stored], delivery, stored)
    if failed:
        delivery.line = f"gateway: could not store {', '.join(failed)} (see the log)"
    else:
        delivery.stored()
    delivery.summary = f"{count} message(s) stored and processed"


def _process(engine: Engine, settings: Settings, ids: list[int], delivery: Delivery,
             batch: list[tuple[Item, Stored]] | None = None) -> None:
    """Process stored messages (`batch`: a backlog's, already read and parsed, else they are
    read here); a failure is logged and named on the delivery's line."""
    if not ids:
        return
    try:
        reader = read if batch is None else functools.partial(_given, _reads(engine, batch))
        pipeline.process_many(engine, settings, ids, reader=reader)
    except Exception as exc:
        log.exception("messages %s..%s stored, processing deferred", ids[0], ids[-1])
        delivery.line = delivery.line or (f"gateway: messages {ids[0]}..{ids[-1]} stored, "
                                          f"processing deferred ({reason(exc)})")


def _reads(engine: Engine, batch: list[tuple[Item, Stored]]) -> dict[int, Read]:
    """A backlog's stored messages as the pipeline decides them, by id: parsed beside (or
    here, where that was not done), with the message each reuses the Message-ID of."""
    with read_scope(engine) as session:
        reused = intake.reused_message_ids(session, [
            (row.id, item.keys.message_id, None if row.duplicate else item.keys.dedupe) for item, row in batch])
    return {row.id: parsed_read(row.id, item.raw, reused.get(row.id), item.parsed) for item, row in batch}


def _given(reads: dict[int, Read], _engine: Engine, ids: list[int]) -> list[Read]:
    return [reads[i] for i in ids]
