"""Cases, their distribution lists, their timeline and their files."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gateway.models.base import Base, Status
from gateway.models.reference import Client, Contact, Licence


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
    # The first-response delays count from these when set (see gateway/jobs/escalation.py).
    criticality_changed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    priority_since: Mapped[dt.datetime | None] = mapped_column(DateTime)
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
