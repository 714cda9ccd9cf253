"""Reference data: clients, contracts and their points, licences, contacts, agents."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from gateway.models.base import Base, reference_key


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
