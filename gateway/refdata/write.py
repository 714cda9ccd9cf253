"""Writing checked reference data: create or update each record on its natural key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.db import utcnow
from gateway.models import CONTACT_ACTIVE, Agent, Client, Contact, Contract, Licence, PointsEntry


@dataclass
class ImportReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, created: bool) -> None:
        target = self.created if created else self.updated
        target[kind] = target.get(kind, 0) + 1

    def summary(self) -> str:
        kinds = ("clients", "contracts", "licences", "contacts", "agents")
        parts = [f"{k}: {self.created.get(k, 0)} new, {self.updated.get(k, 0)} changed" for k in kinds]
        return "; ".join(parts)


def apply_values(obj: Any, values: dict[str, Any]) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed = True
    return changed


def write_clients(session: Session, clients: dict[str, dict[str, Any]],
                   report: ImportReport) -> dict[str, Client]:
    by_code = {c.code: c for c in session.scalars(select(Client))}
    for code, values in clients.items():
        client = by_code.get(code)
        if client is None:
            client = by_code[code] = Client(code=code, **values)
            session.add(client)
            report.count("clients", True)
        elif apply_values(client, values):
            report.count("clients", False)
    session.flush()
    return by_code


def write_contracts(session: Session, contracts: dict[str, dict[str, Any]],
                     by_code: dict[str, Client], report: ImportReport) -> None:
    existing = {c.client_id: c for c in session.scalars(select(Contract))}
    for code, values in contracts.items():
        client_id = by_code[code].id
        contract = existing.get(client_id)
        if contract is None:
            contract = Contract(client_id=client_id, **values)
            session.add(contract)
            session.flush()
            if contract.points:
                session.add(PointsEntry(contract_id=contract.id, delta=contract.points,
                                        balance=contract.points, reason="import", at=utcnow()))
            report.count("contracts", True)
        elif contract.level != values["level"]:
            # Points are spent through the ledger; a re-import sets the level only, so that
            # importing the same file again never refills what customers have used.
            contract.level = values["level"]
            report.count("contracts", False)


def write_licences(session: Session, licences: dict[str, dict[str, Any]],
                    by_code: dict[str, Client], report: ImportReport) -> None:
    existing = {lic.serial: lic for lic in session.scalars(select(Licence))}
    for serial, values in licences.items():
        values = {k: v for k, v in values.items() if k != "client"}
        values["client_id"] = by_code[licences[serial]["client"]].id
        licence = existing.get(serial)
        if licence is None:
            session.add(Licence(serial=serial, **values))
            report.count("licences", True)
        elif apply_values(licence, values):
            report.count("licences", False)


def write_contacts(session: Session, contacts: dict[tuple[str, str], dict[str, Any]],
                    by_code: dict[str, Client], report: ImportReport) -> None:
    existing = {(c.client_id, c.email): c for c in session.scalars(select(Contact))}
    for (code, email), values in contacts.items():
        client_id = by_code[code].id
        contact = existing.get((client_id, email))
        if contact is None:
            session.add(Contact(client_id=client_id, email=email, status=CONTACT_ACTIVE, **values))
            report.count("contacts", True)
        elif apply_values(contact, values):
            report.count("contacts", False)


def write_agents(session: Session, agents: dict[str, dict[str, Any]], report: ImportReport) -> None:
    existing = {a.email: a for a in session.scalars(select(Agent))}
    for email, values in agents.items():
        agent = existing.get(email)
        if agent is None:
            session.add(Agent(email=email, **values))
            report.count("agents", True)
        elif apply_values(agent, values):
            report.count("agents", False)
