"""Drain the outbox: build each delivery's MIME message and hand it to the relay or maildir.

Deliveries are claimed in batches, in one short transaction each: locked for
`outbound.claim_seconds` under the claim's random owner id (claims.py). Just before one is
sent, the claim on it is checked and renewed (in the transaction that records the one
before; a batch's first was claimed a moment before): a delivery whose lock expired while
the batch was slow, and that another sender (a second `gateway serve`, `gateway outbox
send`) claimed meanwhile, is skipped. It is built holding no write lock and sent outside
any transaction, through one relay connection for the whole drain (relay.py; `serve` keeps
it from one drain to the next), then marked sent, retried later with a growing delay, or
set aside as failed after `outbound.give_up_after_hours` (or at once on a permanent 5xx
refusal), and only while the claim still holds it: a stale sender's late update changes
nothing. Delivery is at least once: a crash between sending and marking sends that
delivery again once its lock expires.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gateway import models
from gateway.config import Settings
from gateway.db import read_scope, session_scope, utcnow
from gateway.models import DELIVERY_PENDING, Attachment, Delivery, OutboundFile
from gateway.outbound import digest, headers
from gateway.outbound.claims import Failure, Turn, claim, hold, lock, record
from gateway.outbound.compose import clean_header
from gateway.outbound.relay import PermanentFailure, TemporaryFailure, Transport

log = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]  # naive UTC


def build(delivery: Delivery, settings: Settings, files: Sequence[Attachment] = ()) -> EmailMessage:
    """The MIME message for one recipient: shared headers and body, their own Reply-To, and
    the stored `files` the message carries (inline images within the HTML part)."""
    out = delivery.message
    support = settings.support
    msg = EmailMessage()
    msg["From"] = _addresses("From", [(support.name, support.address)])
    if out.to_header:
        msg["To"] = _addresses("To", out.to_header)
    if out.cc_header:
        msg["Cc"] = _addresses("Cc", out.cc_header)
    reply_to = support.mailbox.with_token(delivery.token) if delivery.token else support.address
    msg["Reply-To"] = _addresses("Reply-To", [(support.name, reply_to)])
    msg["Subject"] = headers.unstructured("Subject", out.subject)
    msg["Date"] = format_datetime(out.created_at.replace(tzinfo=dt.UTC))
    msg["Message-ID"] = out.message_id
    if out.in_reply_to:
        msg["In-Reply-To"] = out.in_reply_to
    if out.references:
        msg["References"] = out.references
    if out.auto_submitted:
        msg["Auto-Submitted"] = out.auto_submitted
    # Loop protection on every mail, a person's answer included: Exchange sends no automatic
    # reply, and a copy forwarded back here is recognised by its X-Loop (see safety.is_loop).
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = support.address
    msg.set_content(out.text)
    msg.add_alternative(out.html, subtype="html")
    _attach(msg, files, support.mailbox.domain or "localhost")
    return msg


def _attach(msg: EmailMessage, files: Sequence[Attachment], domain: str) -> None:
    """Add the files with their own bytes, name and type; an inline image goes beside the
    HTML part (multipart/related) under the Content-ID the template shows it by."""
    parts = msg.get_payload()
    assert isinstance(parts, list)
    html = parts[1]
    assert isinstance(html, EmailMessage)  # set_content then add_alternative: text, then HTML
    for f in files:
        maintype, _, subtype = (f.content_type or "").lower().partition("/")
        if not subtype or maintype in ("multipart", "message"):
            # A forwarded message or an odd type travels as a plain file of the same bytes.
            maintype, subtype = "application", "octet-stream"
        if f.inline:
            html.add_related(f.data, maintype, subtype, cid=f"<file{f.id}@{domain}>",
                             filename=f.filename, disposition="inline")
        else:
            msg.add_attachment(f.data, maintype, subtype, filename=f.filename)


def carried_files(session: Session, outbound_id: int) -> list[Attachment]:
    """The stored files an outbound message carries, in the order the mail names them."""
    return list(session.scalars(
        select(Attachment).join(OutboundFile, OutboundFile.attachment_id == Attachment.id)
        .where(OutboundFile.message_id == outbound_id).order_by(OutboundFile.id)))


def _addresses(header: str, mailboxes: list[tuple[str, str]]) -> headers.Written:
    # Names come from reference data and configuration, written by people: a line break in
    # one must neither add a header nor make the message impossible to build.
    return headers.address_list(header, [(clean_header(name or ""), address) for name, address in mailboxes])


def send_one(engine: Engine, settings: Settings, transport: Transport, owner: str, delivery_id: int,
             clock: Clock, turn: Turn = contextlib.nullcontext, renewed: bool = False,
             renew: int | None = None) -> tuple[str | None, bool]:
    """Send one delivery of the claim `owner` and record the result: the new status, or None
    when another sender holds it now (then nothing is sent, or nothing recorded), and whether
    the claim on `renew` (the batch's next delivery) was renewed with the result. `renewed`:
    this one's was a moment ago (by the claim, or with the previous result)."""
    if not renewed:
        with turn(), session_scope(engine) as session:
            if not hold(session, delivery_id, owner, clock(), lock(settings)):
                return None, False
    with read_scope(engine) as session:  # built holding no write lock
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        recipient = delivery.recipient
        try:
            msg: EmailMessage | None = build(delivery, settings, carried_files(session, delivery.message_id))
        except (ValueError, TypeError, LookupError) as exc:
            # A message that cannot be built never will be: set it aside, keep the batch going.
            log.exception("delivery %s cannot be built", delivery_id)
            msg, build_error = None, f"cannot build the message: {type(exc).__name__}: {exc}"
    failure: Failure | None = None
    try:
        if msg is None:
            raise PermanentFailure(build_error)
        transport.send(msg, recipient)
    except PermanentFailure as exc:
        failure = Failure(str(exc), True, exc.at_rcpt)
    except TemporaryFailure as exc:
        failure = Failure(str(exc))
    except OSError as exc:  # smtplib's errors are OSErrors too
        failure = Failure(f"{type(exc).__name__}: {exc}")
    with turn():
        return record(engine, settings, delivery_id, owner, clock(), failure, renew)


def drain(engine: Engine, settings: Settings, now: dt.datetime | Clock | None = None,
          turn: Turn = contextlib.nullcontext, transport: Transport | None = None) -> dict[str, int]:
    """Send every due delivery once, through one relay connection; returns how many ended in
    each status (`skipped`: another sender held it). `now` is a fixed time or a clock to
    read (default: the real time), read at each claim and each delivery. Held-back notices
    whose window ended are first merged into their digests (digest.py). `transport`: a
    connection the caller keeps from one drain to the next (by default one for this drain)."""
    clock = _clock(now)
    counts: Counter[str] = Counter()
    if not due(engine, clock()):
        return {}
    if due(engine, clock(), (models.DELIVERY_HELD_BACK,)):  # a write only when there is one
        with turn():
            digest.flush(engine, settings, clock())
    with contextlib.nullcontext(transport) if transport is not None else Transport(settings) as out:
        while (batch := claim(engine, clock(), lock(settings), turn=turn)).ids:
            renewed = True  # the first was claimed a moment ago; each next one with the result before
            for index, delivery_id in enumerate(batch.ids):
                following = batch.ids[index + 1] if index + 1 < len(batch.ids) else None
                done, renewed = send_one(engine, settings, out, batch.owner, delivery_id, clock, turn,
                                         renewed, following)
                counts[done or "skipped"] += 1
    return dict(counts)


def due(engine: Engine, now: dt.datetime,
        statuses: tuple[str, ...] = (DELIVERY_PENDING, models.DELIVERY_HELD_BACK)) -> bool:
    """Whether anything is due, read without a write lock (an idle sender never blocks a door)."""
    with read_scope(engine) as session:
        return session.scalar(select(Delivery.id).where(
            Delivery.status.in_(statuses), Delivery.next_attempt_at <= now).limit(1)) is not None


def _clock(now: dt.datetime | Clock | None) -> Clock:
    if now is None:
        return utcnow
    if isinstance(now, dt.datetime):
        return lambda: now
    return now
