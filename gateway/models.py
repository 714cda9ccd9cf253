"""Typed tables: reference data, cases and their timeline, inbound messages, the outbox.

The same schema runs on SQLite and PostgreSQL; the Alembic migrations in
`gateway/migrations/` create it. Timestamps are stored as naive UTC.
"""
from __future__ import annotations

import datetime as dt
import unicodedata
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates


class Status(StrEnum):
    """A case's status, in lifecycle order (gateway/cases.py moves a case between them)."""
    NEW = "nouveau"
    IN_PROGRESS = "en_cours"
    WAITING = "attente_client"
    RESOLVED = "resolu"
    CLOSED = "clos"


OPEN_STATUSES = (Status.NEW, Status.IN_PROGRESS, Status.WAITING, Status.RESOLVED)


class Disposition(StrEnum):
    """What became of a stored message (`inbound_messages.outcome`)."""
    PENDING = "pending"
    CREATED = "created"
    APPENDED = "appended"
    REFUSED = "refused"
    IGNORED = "ignored"
    HELD = "held"

BigId = BigInteger().with_variant(Integer(), "sqlite")


def reference_key(value: str) -> str:
    """A client code or serial folded for comparison: case, spaces, dashes and dots do not
    count, so "sn-7f3a-2291" and "SN 7F3A 2291" find "SN-7F3A-2291"."""
    folded = unicodedata.normalize("NFKC", value).casefold()
    return "".join(c for c in folded if not (c.isspace() or c == "." or unicodedata.category(c) == "Pd"))


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Client(Base):
    __tablename__ = "clients"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    code_key: Mapped[str] = mapped_column(String(64), index=True, default="")
    name: Mapped[str] = mapped_column(String(255))
    language: Mapped[str] = mapped_column(String(8), default="fr")

    @validates("code")
    def _keep_key(self, _name: str, code: str) -> str:
        self.code_key = reference_key(code)
        return code


class Contract(Base):
    __tablename__ = "contracts"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), unique=True)
    level: Mapped[str] = mapped_column(String(32), default="standard")
    points: Mapped[int] = mapped_column(Integer, default=0)


class PointsEntry(Base):
    """The priority-points ledger: one row per debit or credit."""
    __tablename__ = "points_ledger"
    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id"), index=True)
    delta: Mapped[int] = mapped_column(Integer)
    balance: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(255), default="")
    # A case is debited at most once: the unique column makes a second debit fail.
    debit_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), unique=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)


class Licence(Base):
    __tablename__ = "licences"
    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(128), unique=True)
    serial_key: Mapped[str] = mapped_column(String(128), index=True, default="")
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    product: Mapped[str] = mapped_column(String(255), default="")
    modules: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    ends_on: Mapped[dt.date | None] = mapped_column(Date)
    client: Mapped[Client] = relationship()

    @validates("serial")
    def _keep_key(self, _name: str, serial: str) -> str:
        self.serial_key = reference_key(serial)
        return serial


CONTACT_ACTIVE, CONTACT_PENDING, CONTACT_INACTIVE = "active", "pending", "inactive"


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("client_id", "email"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(320), index=True)
    phone: Mapped[str] = mapped_column(String(64), default="")
    language: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=CONTACT_ACTIVE)
    failing_since: Mapped[dt.datetime | None] = mapped_column(DateTime)
    client: Mapped[Client] = relationship()


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(320), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)  # the case number
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"))
    module: Mapped[str | None] = mapped_column(String(128))
    criticality: Mapped[int] = mapped_column(Integer)
    priority: Mapped[bool] = mapped_column(Boolean, default=False)
    title: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(32), default=Status.NEW, index=True)
    main_contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    thread_id: Mapped[str] = mapped_column(String(255), index=True)  # Message-ID every outbound mail refers to
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    first_agent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_customer_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    waiting_since: Mapped[dt.datetime | None] = mapped_column(DateTime)
    client: Mapped[Client] = relationship()
    licence: Mapped[Licence] = relationship()
    main_contact: Mapped[Contact] = relationship()
    distribution: Mapped[list[DistributionEntry]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="DistributionEntry.id")


class DistributionEntry(Base):
    __tablename__ = "case_distribution"
    __table_args__ = (UniqueConstraint("case_id", "contact_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    contact: Mapped[Contact] = relationship()


class CaseEvent(Base):
    __tablename__ = "case_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    author: Mapped[str] = mapped_column(String(320), default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    text: Mapped[str] = mapped_column(Text, default="")
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("case_events.id"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    inline: Mapped[bool] = mapped_column(Boolean, default=False)  # an image shown in the text


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


class Registration(Base):
    """A request to become a contact: a pending contact and the hash of the code sent to it."""
    __tablename__ = "registrations"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    email: Mapped[str] = mapped_column(String(320), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # wrong codes; a few end it


class Confirmation(Base):
    """A message that waits for its sender's real address to confirm it (a reply through
    the token of the confirmation mail): an agent's message without proof, or a change of
    who may read a company's cases."""
    __tablename__ = "confirmations"
    id: Mapped[int] = mapped_column(primary_key=True)
    inbound_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # agent, contact
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class RegistrationRequest(Base):
    """Every `[INSCRIPTION]` received, valid or not: the rate limits count these."""
    __tablename__ = "registration_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    client_code: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)


class LicenceRefusal(Base):
    """A request refused because its licence is inactive (the sales-administration digest)."""
    __tablename__ = "licence_refusals"
    id: Mapped[int] = mapped_column(primary_key=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(BigInteger)
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    request: Mapped[str] = mapped_column(String(32))


class SalesAlert(Base):
    """At most one sales-administration alert per licence per day, enforced by the key."""
    __tablename__ = "sales_alerts"
    __table_args__ = (UniqueConstraint("licence_id", "day"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"))
    day: Mapped[dt.date] = mapped_column(Date)


class State(Base):
    """Small key/value facts the gateway keeps for itself (e.g. its token secret)."""
    __tablename__ = "gateway_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# -- scheduled work (gateway/jobs/): one row per thing done, its key making a second one fail --

class Reminder(Base):
    """A reminder sent on a case waiting for the customer. `period` is the start of the wait
    it belongs to, so a new wait starts again from reminder 1."""
    __tablename__ = "case_reminders"
    __table_args__ = (UniqueConstraint("case_id", "period", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    period: Mapped[dt.datetime] = mapped_column(DateTime)
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(DateTime)


class Escalation(Base):
    """A case escalated to the support lead: once per case."""
    __tablename__ = "case_escalations"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime)
    at: Mapped[dt.datetime] = mapped_column(DateTime)


class SalesDigest(Base):
    """The daily sales-administration digest of refused requests: once per day (the last
    local day it covers); it covers refusals from `since` (inclusive) to `until`."""
    __tablename__ = "sales_digests"
    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, unique=True)
    since: Mapped[dt.datetime] = mapped_column(DateTime)
    until: Mapped[dt.datetime] = mapped_column(DateTime)
    refusals: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(DateTime)


class LicenceExpiry(Base):
    """A licence made inactive because its end date passed; sales administration is told
    once per licence and end date."""
    __tablename__ = "licence_expiries"
    __table_args__ = (UniqueConstraint("licence_id", "ends_on"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"))
    ends_on: Mapped[dt.date] = mapped_column(Date)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
