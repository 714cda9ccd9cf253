"""Import reference data (clients, contracts, licences, contacts, agents) from TOML.

The whole file is checked before anything is written, and written in the caller's one
transaction; importing the same file again changes nothing. Records are matched on their
natural keys (client code, licence serial, client + contact email, agent email).
"""
from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.db import utcnow
from gateway.models import CONTACT_ACTIVE, Agent, Client, Contact, Contract, Licence, PointsEntry, reference_key

LEVELS = ("standard", "privilege", "excellence")
LANGUAGES = ("fr", "en")


class RefDataError(Exception):
    """The file is not valid reference data; `errors` names each record and field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


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


def normalise_email(value: Any) -> str | None:
    """A lowercased, syntactically valid address, or None. Never looks up DNS."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def text(self, where: str, rec: dict[str, Any], key: str, required: bool = True) -> str:
        value = rec.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.errors.append(f"{where}: field '{key}' is required")
            return ""
        if not isinstance(value, str):
            self.errors.append(f"{where}: field '{key}' must be text, not {value!r}")
            return ""
        return value.strip()

    def choice(self, where: str, rec: dict[str, Any], key: str, allowed: tuple[str, ...],
               default: str | None) -> str | None:
        value = rec.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or value.strip().lower() not in allowed:
            self.errors.append(f"{where}: field '{key}' must be one of {', '.join(allowed)}, not {value!r}")
            return default
        return value.strip().lower()


def _records(data: dict[str, Any], kind: str, check: _Checker) -> list[dict[str, Any]]:
    records = data.get(kind, [])
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        check.errors.append(f"[[{kind}]] must be a list of tables")
        return []
    return records


def load_file(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RefDataError([f"not valid TOML: {exc}"]) from exc


def import_data(session: Session, data: dict[str, Any]) -> ImportReport:
    """Validate `data` then create or update every record. Raises RefDataError and writes
    nothing (the caller rolls back) when any record is wrong. Never commits."""
    check = _Checker()
    unknown = set(data) - {"clients", "contracts", "licences", "contacts", "agents"}
    if unknown:
        check.errors.append(f"unknown section(s): {', '.join(sorted(unknown))}")
    clients = _validated_clients(_records(data, "clients", check), check)
    known_codes = set(clients) | set(session.scalars(select(Client.code)))
    contracts = _validated_contracts(_records(data, "contracts", check), check, known_codes)
    licences = _validated_licences(_records(data, "licences", check), check, known_codes)
    contacts = _validated_contacts(_records(data, "contacts", check), check, known_codes)
    agents = _validated_agents(_records(data, "agents", check), check)
    _check_keys(check, "client code", clients, session.scalars(select(Client.code)))
    _check_keys(check, "serial", licences, session.scalars(select(Licence.serial)))
    if check.errors:
        raise RefDataError(check.errors)
    report = ImportReport()
    by_code = _write_clients(session, clients, report)
    _write_contracts(session, contracts, by_code, report)
    _write_licences(session, licences, by_code, report)
    _write_contacts(session, contacts, by_code, report)
    _write_agents(session, agents, report)
    session.flush()
    return report


def _check_keys(check: _Checker, kind: str, new: Iterable[str], stored: Iterable[str]) -> None:
    """Codes and serials are compared without regard to case, spaces, dashes and dots: two
    that differ only by those would be the same to a customer, so the import refuses them."""
    seen: dict[str, str] = {}
    for value in [*stored, *new]:
        key = reference_key(value)
        other = seen.setdefault(key, value)
        if other != value:
            check.errors.append(f"{kind} {value!r} and {kind} {other!r} differ only by case, spaces, "
                                "dashes or dots: customers could not tell them apart")


def _validated_clients(records: list[dict[str, Any]], check: _Checker) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records, 1):
        where = f"clients #{i}"
        code = check.text(where, rec, "code")
        where = f"client {code or '#' + str(i)}"
        if code in out:
            check.errors.append(f"{where}: code listed twice")
        out[code] = {"name": check.text(where, rec, "name"),
                     "language": check.choice(where, rec, "language", LANGUAGES, "fr")}
    return out


def _validated_contracts(records: list[dict[str, Any]], check: _Checker,
                         codes: set[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records, 1):
        client = check.text(f"contracts #{i}", rec, "client")
        where = f"contract of client {client or '#' + str(i)}"
        if client and client not in codes:
            check.errors.append(f"{where}: unknown client {client!r}")
        if client in out:
            check.errors.append(f"{where}: client listed twice")
        points = rec.get("points", 0)
        if not isinstance(points, int) or isinstance(points, bool) or points < 0:
            check.errors.append(f"{where}: field 'points' must be a whole number >= 0, not {points!r}")
            points = 0
        out[client] = {"level": check.choice(where, rec, "level", LEVELS, "standard"), "points": points}
    return out


def _validated_licences(records: list[dict[str, Any]], check: _Checker,
                        codes: set[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records, 1):
        serial = check.text(f"licences #{i}", rec, "serial")
        where = f"licence {serial or '#' + str(i)}"
        if serial in out:
            check.errors.append(f"{where}: serial listed twice")
        client = check.text(where, rec, "client")
        if client and client not in codes:
            check.errors.append(f"{where}: unknown client {client!r}")
        modules = rec.get("modules", [])
        if not isinstance(modules, list) or not all(isinstance(m, str) and m.strip() for m in modules):
            check.errors.append(f"{where}: field 'modules' must be a list of names")
            modules = []
        active = rec.get("active", True)
        if not isinstance(active, bool):
            check.errors.append(f"{where}: field 'active' must be true or false, not {active!r}")
        ends_on = rec.get("ends_on")
        if ends_on is not None and (not isinstance(ends_on, dt.date) or isinstance(ends_on, dt.datetime)):
            check.errors.append(f"{where}: field 'ends_on' must be a date (2027-03-31), not {ends_on!r}")
            ends_on = None
        out[serial] = {"client": client, "product": check.text(where, rec, "product", required=False),
                       "modules": [m.strip() for m in modules], "active": active is True,
                       "ends_on": ends_on}
    return out


def _validated_contacts(records: list[dict[str, Any]], check: _Checker,
                        codes: set[str]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i, rec in enumerate(records, 1):
        where = f"contacts #{i}"
        client = check.text(where, rec, "client")
        raw_email = check.text(where, rec, "email")
        where = f"contact {raw_email or '#' + str(i)}"
        if client and client not in codes:
            check.errors.append(f"{where}: unknown client {client!r}")
        email = normalise_email(raw_email)
        if raw_email and email is None:
            check.errors.append(f"{where}: field 'email' is not a valid address: {raw_email!r}")
        key = (client, email or raw_email)
        if key in out:
            check.errors.append(f"{where}: listed twice for client {client}")
        out[key] = {"name": check.text(where, rec, "name", required=False),
                    "phone": check.text(where, rec, "phone", required=False),
                    "language": check.choice(where, rec, "language", LANGUAGES, None)}
    return out


def _validated_agents(records: list[dict[str, Any]], check: _Checker) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records, 1):
        raw_email = check.text(f"agents #{i}", rec, "email")
        where = f"agent {raw_email or '#' + str(i)}"
        email = normalise_email(raw_email)
        if raw_email and email is None:
            check.errors.append(f"{where}: field 'email' is not a valid address: {raw_email!r}")
        if email in out:
            check.errors.append(f"{where}: listed twice")
        out[email or raw_email] = {"name": check.text(where, rec, "name", required=False)}
    return out


def _apply(obj: Any, values: dict[str, Any]) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed = True
    return changed


def _write_clients(session: Session, clients: dict[str, dict[str, Any]],
                   report: ImportReport) -> dict[str, Client]:
    by_code = {c.code: c for c in session.scalars(select(Client))}
    for code, values in clients.items():
        client = by_code.get(code)
        if client is None:
            client = by_code[code] = Client(code=code, **values)
            session.add(client)
            report.count("clients", True)
        elif _apply(client, values):
            report.count("clients", False)
    session.flush()
    return by_code


def _write_contracts(session: Session, contracts: dict[str, dict[str, Any]],
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


def _write_licences(session: Session, licences: dict[str, dict[str, Any]],
                    by_code: dict[str, Client], report: ImportReport) -> None:
    existing = {lic.serial: lic for lic in session.scalars(select(Licence))}
    for serial, values in licences.items():
        values = {k: v for k, v in values.items() if k != "client"}
        values["client_id"] = by_code[licences[serial]["client"]].id
        licence = existing.get(serial)
        if licence is None:
            session.add(Licence(serial=serial, **values))
            report.count("licences", True)
        elif _apply(licence, values):
            report.count("licences", False)


def _write_contacts(session: Session, contacts: dict[tuple[str, str], dict[str, Any]],
                    by_code: dict[str, Client], report: ImportReport) -> None:
    existing = {(c.client_id, c.email): c for c in session.scalars(select(Contact))}
    for (code, email), values in contacts.items():
        client_id = by_code[code].id
        contact = existing.get((client_id, email))
        if contact is None:
            session.add(Contact(client_id=client_id, email=email, status=CONTACT_ACTIVE, **values))
            report.count("contacts", True)
        elif _apply(contact, values):
            report.count("contacts", False)


def _write_agents(session: Session, agents: dict[str, dict[str, Any]], report: ImportReport) -> None:
    existing = {a.email: a for a in session.scalars(select(Agent))}
    for email, values in agents.items():
        agent = existing.get(email)
        if agent is None:
            session.add(Agent(email=email, **values))
            report.count("agents", True)
        elif _apply(agent, values):
            report.count("agents", False)
