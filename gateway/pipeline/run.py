"""Run the pipeline on a stored message: parse -> safety -> route -> the rule that applies.

`process` is the one place where an unexpected exception is caught: the message is then
*held* with its reason, and `gateway inbound retry ID` runs it again. Every message ends
with a visible outcome (created, appended, refused, ignored or held) and its reasons.
"""
from __future__ import annotations

import datetime as dt
import logging
import traceback

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.models import HELD, IGNORED, PENDING, REFUSED, InboundMessage
from gateway.outbound.outbox import Outbox
from gateway.pipeline import confirm, loops, registration, route, safety
from gateway.pipeline.contacts import manage_contact
from gateway.pipeline.follow import follow
from gateway.pipeline.agent import agent_message
from gateway.pipeline.follow_up import follow_up
from gateway.pipeline.grammar import parse_request
from gateway.pipeline.open_case import open_case
from gateway.pipeline.parse import ParsedMail, parse
from gateway.pipeline.work import Claimed, Outcome, Problem, Work

log = logging.getLogger(__name__)


def decide(session: Session, settings: Settings, inbound: Claimed, parsed: ParsedMail,
           now: dt.datetime) -> Outcome:
    """What to do with one message, as a value. Writes the case changes and the outbox in
    the caller's transaction; never commits."""
    if inbound.duplicate_of is not None:
        return Outcome(IGNORED, (f"duplicate of message {inbound.duplicate_of}",))
    reason = safety.automatic_reason(parsed, inbound.envelope_from)
    if reason is not None:
        marked = safety.record_bounce(session, parsed, now) if parsed.is_report else []
        return Outcome(IGNORED, (f"automatic message: {reason}",)
                       + tuple(f"address marked failing: {a}" for a in marked))
    if safety.is_loop(parsed, settings):
        return Outcome(IGNORED, ("message from the support address itself (loop)",))
    sender = route.identify(session, settings, parsed)
    if sender.address is None:
        return Outcome(REFUSED, ("no valid sender address: nobody to answer",))
    request = parse_request(parsed.subject, parsed.new_text, settings.support.case_tag)
    outbox = Outbox(session, settings, now, answering=parsed.message_id, inbound_id=inbound.id,
                    author=sender.address)
    work = Work(session, settings, now, inbound, parsed, request, sender, outbox)
    confirmation = confirm.answered(work)
    if confirmation is not None:  # through a token only its address received: may say nothing
        return confirm.release(work, confirmation)
    loop = loops.own_mail(session, settings, parsed, sender.address, now)
    if loop is not None:
        return Outcome(IGNORED, (f"the gateway's own mail coming back (loop): {loop}",))
    pending = registration.pending_registration(work)
    # "[INSCRIPTION 123456]" or a reply to the code mail confirms; a bare "[INSCRIPTION]"
    # asks again (a new code).
    if pending is not None and ("register" not in request.flags or request.command_values.get("register")):
        return registration.confirm(work, pending)
    if "register" in request.flags:
        return registration.register(work)
    found = route.find_case(session, settings, parsed, request, inbound, sender)
    case = found.case
    if sender.agent is not None:
        # A From naming an agent proves nothing: without proof the message waits for the
        # agent's real address to confirm it, and no customer sees anything meanwhile.
        if case is not None and not confirm.proven(work, found.by_token):
            return confirm.ask(work, "agent", case)
        return agent_message(work, case)
    if "follow" in request.flags:
        return follow(work, case)
    if "contact" in request.flags:
        return manage_contact(work)
    if case is not None:
        return follow_up(work, case)
    if request.case_number is not None:
        return work.no_access()
    command = next((c for c in ("close", "closed", "info") if c in request.flags), None)
    if command is not None:
        return work.refuse([Problem("needs_case", {"command": command})])
    return open_case(work)


def claim(session: Session, inbound_id: int, now: dt.datetime, retry: bool = False) -> Claimed | None:
    """Take the message for this transaction; None when it was already processed.

    The first statement is a write so that two gateways (or `ingest` beside `serve`) never
    process one message twice: the loser waits for the winner's commit, then sees no row.
    """
    states = (PENDING, HELD) if retry else (PENDING,)
    row = session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == inbound_id, InboundMessage.outcome.in_(states))
        .values(attempts=InboundMessage.attempts + 1, processed_at=now)
        .returning(InboundMessage.id, InboundMessage.raw, InboundMessage.envelope_from,
                   InboundMessage.envelope_to, InboundMessage.duplicate_of)
        .execution_options(synchronize_session=False)).first()
    return Claimed(row.id, row.raw, row.envelope_from, list(row.envelope_to or []),
                   row.duplicate_of) if row is not None else None


def process(engine: Engine, settings: Settings, inbound_id: int, now: dt.datetime | None = None,
            retry: bool = False) -> Outcome | None:
    """Process one stored message in one transaction; None if someone else already did."""
    return process_many(engine, settings, [inbound_id], now, retry)[0]


def process_many(engine: Engine, settings: Settings, ids: list[int], now: dt.datetime | None = None,
                 retry: bool = False) -> list[Outcome | None]:
    """Process stored messages; the outbox is written in the same transaction as each case.

    A backlog batch first runs in one transaction without savepoints (the fast path: one
    commit and one set of reference-data look-ups for all). Should any message raise, that
    transaction is rolled back whole and the batch is done again one message per
    transaction, each inside a savepoint, so that only the failing message is held."""
    if len(ids) > 1:
        try:
            with session_scope(engine) as session:
                return [_process_in(session, settings, i, now or utcnow(), retry, isolate=False) for i in ids]
        except _Unisolated as exc:
            log.warning("a message of batch %s..%s failed (%s); processing one by one", ids[0], ids[-1], exc)
    outcomes = []
    for inbound_id in ids:
        with session_scope(engine) as session:
            outcomes.append(_process_in(session, settings, inbound_id, now or utcnow(), retry, isolate=True))
    return outcomes


class _Unisolated(Exception):
    """A message raised on the fast path, where it cannot be held alone."""


def _process_in(session: Session, settings: Settings, inbound_id: int, now: dt.datetime,
                retry: bool, isolate: bool) -> Outcome | None:
    inbound = claim(session, inbound_id, now, retry)
    if inbound is None:
        return None
    parsed, error = None, None
    try:
        parsed = parse(inbound.raw)
        if isolate:
            with session.begin_nested():
                outcome = decide(session, settings, inbound, parsed, now)
        else:
            outcome = decide(session, settings, inbound, parsed, now)
    except Exception as exc:  # noqa: BLE001 - the one place that holds instead of losing
        if not isolate:
            raise _Unisolated(f"message {inbound_id}: {type(exc).__name__}") from exc
        log.exception("message %s held", inbound_id)
        outcome = Outcome(HELD, (f"unexpected error: {type(exc).__name__}: {exc}"[:500],))
        error = traceback.format_exc()[-8000:]
    values = dict(outcome=outcome.outcome, reasons=list(outcome.reasons), case_id=outcome.case_id,
                  error=error)
    if parsed is not None:
        values.update(sender=(parsed.from_addr or "")[:320] or None, subject=parsed.subject)
    session.execute(update(InboundMessage).where(InboundMessage.id == inbound_id).values(**values)
                    .execution_options(synchronize_session=False))
    if outcome.release is not None:
        # The message this one confirmed, in the same transaction: confirmed and applied together.
        _process_in(session, settings, outcome.release, now, retry=True, isolate=isolate)
    return outcome


def pending_ids(engine: Engine, limit: int = 500) -> list[int]:
    with session_scope(engine) as session:
        return list(session.scalars(select(InboundMessage.id).where(
            InboundMessage.outcome == PENDING).order_by(InboundMessage.id).limit(limit)))
