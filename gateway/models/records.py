"""What the gateway remembers between messages: registrations, proofs, refusals, alerts,
reminders, escalations and digests already sent, and its own state."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models.base import Base


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


class LicenceNotice(Base):
    """A licence's contacts warned that it ends soon: once per licence and end date (a
    licence renewed to a new end date is warned again before that one)."""
    __tablename__ = "licence_notices"
    __table_args__ = (UniqueConstraint("licence_id", "ends_on"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"))
    ends_on: Mapped[dt.date] = mapped_column(Date)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
