"""Drain the outbox: build each delivery's MIME message and hand it to the relay or maildir.

A delivery is claimed (locked for a few minutes) in one short transaction, sent outside
any transaction, then marked sent, retried later with a growing delay, or set aside as
failed after `outbound.give_up_after_hours` (or at once on a permanent 5xx refusal).
"""
from __future__ import annotations

import datetime as dt
import logging
import mailbox
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.models import (DELIVERY_FAILED, DELIVERY_PENDING, DELIVERY_SENT, Attachment, Delivery,
                            OutboundFile)
from gateway.outbound import digest, headers
from gateway.outbound.compose import clean_header
from gateway.outbound.token import reply_address

log = logging.getLogger(__name__)
RETRY_MINUTES = (1, 5, 15, 30, 60, 120, 240, 480)
LOCK = dt.timedelta(minutes=5)


class PermanentFailure(Exception):
    """The relay refused the recipient or the message for good (5xx)."""


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
    reply_to = reply_address(support.address, delivery.token) if delivery.token else support.address
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
    _attach(msg, files, support.address.rpartition("@")[2] or "localhost")
    return msg


def _attach(msg: EmailMessage, files: Sequence[Attachment], domain: str) -> None:
    """Add the files with their own bytes, name and type; an inline image goes beside the
    HTML part (multipart/related) under the Content-ID the template shows it by."""
    html = msg.get_payload()[1]
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


def claim(engine: Engine, now: dt.datetime, limit: int = 50) -> list[int]:
    """Lock up to `limit` due deliveries for this process; two senders never share one."""
    # One statement that reads and locks: on SQLite a read followed by a write fails when
    # another sender wrote in between; on PostgreSQL SKIP LOCKED keeps two senders apart.
    due = (select(Delivery.id).where(Delivery.status == DELIVERY_PENDING, Delivery.next_attempt_at <= now,
                                     or_(Delivery.locked_until.is_(None), Delivery.locked_until < now))
           .order_by(Delivery.id).limit(limit).with_for_update(skip_locked=True))
    with session_scope(engine) as session:
        return sorted(session.scalars(update(Delivery).where(Delivery.id.in_(due.scalar_subquery()))
                                      .values(locked_until=now + LOCK).returning(Delivery.id)))


def _transmit(msg: EmailMessage, recipient: str, settings: Settings) -> None:
    out = settings.outbound
    if out.transport == "maildir":
        folder = settings.path(out.maildir)
        # Maildir(create=True) makes the last folder only: "var/sent" needs "var" first.
        folder.parent.mkdir(parents=True, exist_ok=True)
        box = mailbox.Maildir(folder, create=True)
        try:
            box.add(msg.as_bytes())
        finally:
            box.close()
        return
    try:
        with smtplib.SMTP(out.host, out.port, timeout=30) as smtp:
            if out.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if out.username:
                smtp.login(out.username, out.password)
            smtp.send_message(msg, from_addr=settings.support.address, to_addrs=[recipient])
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(500 <= c < 600 for c in codes):
            raise PermanentFailure(str(exc.recipients)) from exc
        raise
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise PermanentFailure(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
        raise


def send_one(engine: Engine, settings: Settings, delivery_id: int, now: dt.datetime) -> str:
    """Send one claimed delivery and record the result; returns the new status."""
    with session_scope(engine) as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        recipient = delivery.recipient
        try:
            msg: EmailMessage | None = build(delivery, settings, carried_files(session, delivery.message_id))
        except (ValueError, TypeError, LookupError) as exc:
            # A message that cannot be built never will be: set it aside, keep the batch going.
            log.exception("delivery %s cannot be built", delivery_id)
            msg, build_error = None, f"cannot build the message: {type(exc).__name__}: {exc}"
    error: str | None = None
    permanent = False
    try:
        if msg is None:
            raise PermanentFailure(build_error)
        _transmit(msg, recipient, settings)
    except PermanentFailure as exc:
        error, permanent = str(exc), True
    except (OSError, smtplib.SMTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    with session_scope(engine) as session:
        # A write first, for the same reason as in `claim`.
        session.execute(update(Delivery).where(Delivery.id == delivery_id)
                        .values(attempts=Delivery.attempts + 1, locked_until=None))
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        if error is None:
            delivery.status, delivery.sent_at, delivery.last_error = DELIVERY_SENT, now, None
        else:
            delivery.last_error = error[:2000]
            give_up = delivery.created_at + dt.timedelta(hours=settings.outbound.give_up_after_hours)
            delay = dt.timedelta(minutes=RETRY_MINUTES[min(delivery.attempts, len(RETRY_MINUTES)) - 1])
            if permanent or now + delay > give_up:
                delivery.status = DELIVERY_FAILED
                log.warning("delivery %s to %s set aside: %s", delivery_id, recipient, error)
            else:
                delivery.next_attempt_at = now + delay
        return delivery.status


def drain(engine: Engine, settings: Settings, now: dt.datetime | None = None) -> dict[str, int]:
    """Send every due delivery once; returns how many ended in each status. Held-back
    notices whose window ended are first merged into their digests (digest.py)."""
    counts: dict[str, int] = {}
    digest.flush(engine, settings, now)
    while True:
        now_ = now or utcnow()
        ids = claim(engine, now_)
        if not ids:
            return counts
        for delivery_id in ids:
            status = send_one(engine, settings, delivery_id, now_)
            counts[status] = counts.get(status, 0) + 1
