"""Run the pipeline on a stored message: parse -> safety -> the rules table (gateway/rules/).

`process` is the one place where an unexpected exception is caught: the message is then
*held* with its reason, and `gateway inbound retry ID` runs it again. Every message ends
with a visible outcome (created, appended, refused, ignored or held) and its reasons,
followed by what was read only in part (`ParsedMail.notes`) and by what the sender's
fields changed (a reused Message-ID, no automatic answer wanted).

One expensive message never delays the others. A message is processed in two steps:

1. *read and parse*, with no lock held: the raw bytes are read in a read-only session
   (on SQLite it does not take the write lock), then parsed outside any transaction;
2. *claim and decide*, in one write transaction: the claim (a `SELECT … FOR UPDATE` of the
   still pending rows of a batch, the transaction's first statement) takes the messages,
   then the rules write each one's case, outbox and outcome.

Parsing, the only step whose cost depends on the message (see parse/), holds no lock. Two
gateways may both read and parse a message, but only one claims it. A batch
(`process_many`) reads and parses up to 32 MB of messages ahead, then decides them in as
few transactions as its `Pace` allows.
"""
from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine, bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from gateway import bounds, rows, rules
from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.direct import PIPELINED, Direct
from gateway.models import Disposition, InboundMessage
from gateway.outbound.outbox import Outbox
from gateway.pipeline import known, safety
from gateway.pipeline.grammar import parse_request
from gateway.pipeline.parse import ParsedMail
from gateway.pipeline.reading import Read, groups, parsed_read, read
from gateway.pipeline.reference import read_cases
from gateway.pipeline.sender import identify
from gateway.pipeline.work import Claimed, Outcome, Work

log = logging.getLogger(__name__)


def decide(session: Session, settings: Settings, inbound: Claimed, parsed: ParsedMail,
           now: dt.datetime) -> Outcome:
    """What to do with one message, as a value. Writes the case changes and the outbox in
    the caller's transaction; never commits."""
    if inbound.duplicate_of is not None:
        return Outcome(Disposition.IGNORED, (f"duplicate of message {inbound.duplicate_of}",))
    reason = safety.automatic_reason(parsed, inbound.envelope_from)
    if reason is not None:
        marked = safety.record_bounce(session, parsed, now) if parsed.is_report else []
        return Outcome(Disposition.IGNORED, (f"automatic message: {reason}",)
                       + tuple(f"address marked failing: {a}" for a in marked))
    if safety.is_loop(parsed, settings):
        return Outcome(Disposition.IGNORED, ("message from the support address itself (loop)",))
    sender = identify(session, settings, parsed)
    if sender.address is None:
        return Outcome(Disposition.REFUSED, ("no valid sender address: nobody to answer",))
    request = parse_request(parsed.subject, parsed.new_text, settings.support.case_tag)
    quiet = safety.no_answer_wanted(parsed)
    outbox = Outbox(session, settings, now, answering=parsed.message_id, inbound_id=inbound.id,
                    author=sender.address, quiet_author=quiet is not None)
    outcome = rules.decide(Work(session, settings, now, inbound, parsed, request, sender, outbox))
    rows.write_cases(session)
    if outbox.suppressed:
        outcome = replace(outcome, reasons=outcome.reasons + (f"no automatic answer to the sender: {quiet}",))
    return outcome


def claim(session: Session, reads: list[Read], retry: bool = False) -> dict[int, Claimed]:
    """Take the messages for this transaction, in one statement; those already processed
    (or being processed) by someone else are left out.

    It is the transaction's first statement and locks the rows, in the order of their ids,
    so that two gateways (or `ingest` beside `serve`) never process one message twice: the
    loser waits for the winner's commit, then no longer finds the message pending. On
    SQLite the transaction holds the write lock from its start. The row is written once,
    with the outcome (`_DONE`), which counts the attempt.
    """
    if len(reads) == 1:  # the door's steady flow: on the cursor
        one = _CLAIM_ONE[retry].first(session, {"claim_id": reads[0].id})
        found: Iterable[Sequence[Any]] = [one] if one is not None else []
    else:
        found = session.execute(_CLAIM[retry], {"ids": [r.id for r in reads]})
    return {row[0]: Claimed(row[0], row[1], list(row[2] or []), row[3]) for row in found}


# The message's own row is written by Core statements built once: building a statement for
# each message (and the ORM's work on it) cost four times what running it does.
_INBOUND = rows.INBOUND
_CLAIMED = (_INBOUND.c.id, _INBOUND.c.envelope_from, _INBOUND.c.envelope_to, _INBOUND.c.duplicate_of)
_PENDING = {retry: or_(*(_INBOUND.c.outcome == d for d in ((Disposition.PENDING, Disposition.HELD) if retry
                                                             else (Disposition.PENDING,))))
            for retry in (False, True)}
_CLAIM = {retry: select(*_CLAIMED).where(_INBOUND.c.id.in_(bindparam("ids", expanding=True)), pending)
          .order_by(_INBOUND.c.id).with_for_update() for retry, pending in _PENDING.items()}
_CLAIM_ONE = {retry: Direct(select(*_CLAIMED).where(_INBOUND.c.id == bindparam("claim_id"), pending)
                            .with_for_update(), returns=_CLAIMED) for retry, pending in _PENDING.items()}
# SET: the columns given, and the attempt counted.
_DONE = Direct(update(_INBOUND).where(_INBOUND.c.id == bindparam("done_id")).values(attempts=_INBOUND.c.attempts + 1))


@dataclass(frozen=True)
class Pace:
    """How a run of messages shares the database with others: `pause()` is asked after each
    message of a batch transaction and, when true, the transaction commits there (the
    next one begins after); `committed()` is called after every commit, `before()` before
    every transaction begins (once the messages are read and parsed)."""
    pause: Callable[[], bool] = lambda: False
    committed: Callable[[], None] = lambda: None
    before: Callable[[], None] = lambda: None


def process(engine: Engine, settings: Settings, inbound_id: int, now: dt.datetime | None = None,
            retry: bool = False) -> Outcome | None:
    """Process one stored message in one transaction; None if someone else already did."""
    return process_many(engine, settings, [inbound_id], now, retry)[0]


def process_many(engine: Engine, settings: Settings, ids: list[int], now: dt.datetime | None = None,
                 retry: bool = False, pace: Pace = Pace(),
                 reader: Callable[[Engine, list[int]], list[Read]] = read) -> list[Outcome | None]:
    """Process stored messages; the outbox is written in the same transaction as each case.
    Each group of at most 32 MB of messages is read and parsed first (by `reader`: a
    backlog's may have parsed them in another process meanwhile), then decided."""
    outcomes: dict[int, Outcome | None] = {}
    for group in groups(engine, ids):
        reads = reader(engine, group)
        outcomes.update(zip([r.id for r in reads], _decide_all(engine, settings, reads, now, retry, pace),
                            strict=True))
    return [outcomes.get(i) for i in ids]


def _decide_all(engine: Engine, settings: Settings, reads: list[Read], now: dt.datetime | None,
                retry: bool, pace: Pace) -> list[Outcome | None]:
    """Decide parsed messages. A batch runs in as few transactions as `pace` allows, without
    savepoints (the fast path: one commit and one set of reference-data look-ups for many).
    Should a message raise there, that transaction is rolled back whole and its messages
    are done again one per transaction, each inside a savepoint, so that only the failing
    message is held; the fast path then goes on with the rest.

    A transaction claims and reads ahead (contacts, licences, cases) for the messages it
    takes: the first all of them, each next one twice as many as the one before decided.
    When `pace` pauses transactions after a message or two (a door or the sender waits to
    write), reading ahead for the whole rest of the batch at each would hold the writers'
    line for look-ups that the next transaction makes again."""
    outcomes: list[Outcome | None] = []
    take = len(reads)
    while len(outcomes) < len(reads):
        rest = reads[len(outcomes):]
        if len(rest) > 1:
            pace.before()
            done, failed = _fast(engine, settings, rest[:max(take, 2)], now, retry, pace)
            outcomes += done
            pace.committed()
            take = 2 * len(done)
            if failed is None:
                continue
            rest = rest[len(done):failed + 1]
            log.warning("a message of batch %s..%s failed; processing them one by one", rest[0].id, rest[-1].id)
        for r in rest:
            pace.before()
            with session_scope(engine) as session:
                outcomes.append(_process_in(session, settings, r, now or utcnow(), retry, isolate=True))
            pace.committed()
    return outcomes


def _fast(engine: Engine, settings: Settings, reads: list[Read], now: dt.datetime | None, retry: bool,
          pace: Pace) -> tuple[list[Outcome | None], int | None]:
    """Decide `reads` in one transaction until `pace` pauses it: the committed outcomes, and
    the index of the message that raised (then nothing was committed). A write sent
    `later` fails where the writer next waits, perhaps at a later message or the commit:
    then every message up to there is the suspect one."""
    done: list[Outcome | None] = []
    try:
        with session_scope(engine) as session:
            session.info[PIPELINED] = True
            claimed = claim(session, reads, retry)
            known.prefetch_batch(session, [r.parsed for r in reads if r.parsed is not None])
            read_cases(session, settings, [(r.parsed, claimed[r.id]) for r in reads
                                           if r.parsed is not None and r.id in claimed])
            for r in reads:
                session.info[rows.LEFT] = len(reads) - len(done)
                done.append(_process_in(session, settings, r, now or utcnow(), retry, isolate=False,
                                        claimed=claimed))
                if pace.pause():
                    break
    except _Unisolated:
        return [], len(done)
    except DBAPIError as error:
        if error.connection_invalidated:
            raise
        return [], max(len(done) - 1, 0)
    return done, None


class _Unisolated(Exception):
    """A message raised on the fast path, where it cannot be held alone."""


def _process_in(session: Session, settings: Settings, read: Read, now: dt.datetime,
                retry: bool, isolate: bool, claimed: dict[int, Claimed] | None = None) -> Outcome | None:
    """Decide one message and write its outcome; `claimed`: what the batch's transaction
    took (else the message is claimed here). None when it was processed by someone else."""
    inbound = (claimed if claimed is not None else claim(session, [read], retry)).get(read.id)
    if inbound is None:
        return None
    # What the messages before this one changed in the session is written here, before
    # this message's rules read cases (the outcome and the outbox's counts never flush).
    session.flush()
    parsed, error = read.parsed, None
    try:
        if read.error is not None:
            raise read.error
        assert parsed is not None
        if isolate:
            with session.begin_nested():
                outcome = decide(session, settings, inbound, parsed, now)
        else:
            outcome = decide(session, settings, inbound, parsed, now)
    except Exception as exc:
        if not isolate:
            raise _Unisolated(f"message {read.id}: {type(exc).__name__}") from exc
        log.exception("message %s held", read.id)
        outcome = Outcome(Disposition.HELD, (f"unexpected error: {type(exc).__name__}: {exc}",))
        error = bounds.text(traceback.format_exc()[-8000:])
    reasons = [bounds.line(r, bounds.REASON) for r in outcome.reasons + read.notes]
    values = dict(outcome=outcome.outcome, reasons=reasons, case_id=outcome.case_id, error=error, processed_at=now)
    if parsed is not None:
        values.update(sender=parsed.from_addr, subject=parsed.subject)
    _DONE.later(session, [{"done_id": read.id, **values}])
    if outcome.release is not None:
        # The message this one confirmed, in the same transaction: confirmed and applied together.
        raw = session.scalar(select(InboundMessage.raw).where(InboundMessage.id == outcome.release))
        if raw is not None:
            _process_in(session, settings, parsed_read(outcome.release, raw, None), now, retry=True, isolate=isolate)
    return replace(outcome, reasons=tuple(reasons))
