"""Mail in and out: stored inbound messages, the outbox, its files and deliveries."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.models.base import Base, BigId, Disposition


class InboundMessage(Base):
    """A message exactly as received, and what became of it."""
    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    door: Mapped[str] = mapped_column(String(16))
    envelope_from: Mapped[str | None] = mapped_column(String(320))
    envelope_to: Mapped[list[Any]] = mapped_column(default=list)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    # Set on the first delivery of a message only; a second delivery of the same message
    # (same Message-ID or, without one, same bytes) is stored but never processed again.
    dedupe_key: Mapped[str | None] = mapped_column(String(998), unique=True)
    duplicate_of: Mapped[int | None] = mapped_column(BigInteger)
    source_key: Mapped[str | None] = mapped_column(String(512), unique=True)  # e.g. IMAP mailbox/uidvalidity/uid
    sender: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16), default=Disposition.PENDING, index=True)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Set while an IMAP door flags and moves the message: two gateways never move it twice.
    filing_until: Mapped[dt.datetime | None] = mapped_column(DateTime)


class OutboundMessage(Base):
    """One composed message; delivered once per recipient (each with its own Reply-To token)."""
    __tablename__ = "outbound_messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    auto_submitted: Mapped[str] = mapped_column(String(32))
    # "notice": a mail about someone else's message (capped per recipient, see outbound/digest.py);
    # "stranger": an answer to a sender who is neither a contact nor an agent; "" otherwise.
    audience: Mapped[str] = mapped_column(String(16), default="")
    author: Mapped[str | None] = mapped_column(String(320))  # who wrote the message it is about
    to_header: Mapped[list[Any]] = mapped_column(default=list)
    cc_header: Mapped[list[Any]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="message", lazy="selectin")
    __table_args__ = (Index("ix_outbound_messages_audience_created", "audience", "created_at"),)


class OutboundFile(Base):
    """A stored file an outbound message carries: the outbox refers to it, never copies it."""
    __tablename__ = "outbound_files"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbound_messages.id"), index=True)
    attachment_id: Mapped[int] = mapped_column(ForeignKey("attachments.id"))


DELIVERY_PENDING, DELIVERY_SENT, DELIVERY_FAILED = "pending", "sent", "failed"
# A notice over its recipient's cap waits (held_back) for the window to end, then goes out
# within one digest mail; its own row is then "merged".
DELIVERY_HELD_BACK, DELIVERY_MERGED = "held_back", "merged"


class Delivery(Base):
    """The outbox proper: one recipient of one outbound message, with its retry state."""
    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_deliveries_recipient_at", "recipient", "created_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbound_messages.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    token: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default=DELIVERY_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    claim: Mapped[str | None] = mapped_column(String(32))  # the sender's claim that locked it
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    message: Mapped[OutboundMessage] = relationship(back_populates="deliveries", lazy="joined")
