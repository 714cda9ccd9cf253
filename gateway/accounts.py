"""The operator's view of reference data: contacts, licences, contracts and their points.

Plain dicts for the command line; `credit` (a ledger entry and the new balance) and
`mark_failing` are the only writes, in the caller's transaction. Never commits.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.models import Client, Contact, Contract, Licence, PointsEntry


class UnknownClient(LookupError):
    """No client has this code."""


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value else None


def _client(session: Session, code: str) -> Client:
    client = session.scalar(select(Client).where(Client.code == code))
    if client is None:
        raise UnknownClient(code)
    return client


def contacts_list(session: Session, client: str | None = None) -> list[dict[str, Any]]:
    query = (select(Contact, Client.code).join(Client, Contact.client_id == Client.id)
             .order_by(Client.code, Contact.email))
    if client:
        query = query.where(Client.code == client)
    return [{"client": code, "name": c.name, "email": c.email, "phone": c.phone, "language": c.language,
             "status": c.status, "failing_since": _iso(c.failing_since)} for c, code in session.execute(query)]


def contact_show(session: Session, email: str) -> list[dict[str, Any]]:
    """Every contact record with this address (one per client)."""
    return [row for row in contacts_list(session) if row["email"] == email.strip().lower()]


def licences_list(session: Session, client: str | None = None) -> list[dict[str, Any]]:
    query = (select(Licence, Client.code).join(Client, Licence.client_id == Client.id)
             .order_by(Client.code, Licence.serial))
    if client:
        query = query.where(Client.code == client)
    today = dt.date.today()
    return [{"serial": lic.serial, "client": code, "product": lic.product, "modules": lic.modules,
             "status": "active" if lic.active else "inactive", "ends_on": _iso(lic.ends_on),
             "expired": bool(lic.ends_on and lic.ends_on < today)} for lic, code in session.execute(query)]


def contract_show(session: Session, code: str) -> dict[str, Any]:
    client = _client(session, code)
    contract = session.scalar(select(Contract).where(Contract.client_id == client.id))
    ledger = [] if contract is None else list(session.scalars(
        select(PointsEntry).where(PointsEntry.contract_id == contract.id).order_by(PointsEntry.id)))
    return {"client": client.code, "name": client.name, "level": contract.level if contract else None,
            "points": contract.points if contract else 0,
            "ledger": [{"at": _iso(e.at), "delta": e.delta, "balance": e.balance, "reason": e.reason,
                        "case": e.debit_case_id} for e in ledger]}


def credit(session: Session, code: str, points: int, reason: str, now: dt.datetime) -> int:
    """Add `points` (negative to withdraw, never below zero) to the client's contract; the new balance."""
    client = _client(session, code)
    contract = session.scalar(select(Contract).where(Contract.client_id == client.id))
    if contract is None:
        contract = Contract(client_id=client.id, level="standard", points=0)
        session.add(contract)
        session.flush()
    balance = session.execute(update(Contract).where(Contract.id == contract.id, Contract.points + points >= 0)
                              .values(points=Contract.points + points).returning(Contract.points)).scalar()
    if balance is None:
        raise ValueError(f"client {code} has {contract.points} point(s); cannot withdraw {-points}")
    session.add(PointsEntry(contract_id=contract.id, delta=points, balance=balance, reason=reason or "operator",
                            at=now))
    return balance


def mark_failing(session: Session, addresses: list[str], now: dt.datetime) -> None:
    """Mark the contacts at `addresses` as failing since `now` (those already failing keep
    their date): a delivery report or the relay's 5xx at RCPT said mail to them fails."""
    session.execute(update(Contact).where(Contact.email.in_(addresses), Contact.failing_since.is_(None))
                    .values(failing_since=now).execution_options(synchronize_session=False))
