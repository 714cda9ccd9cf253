"""Import reference data (clients, contracts, licences, contacts, agents) from TOML.

The whole file is checked before anything is written, and written in the caller's one
transaction; importing the same file again changes nothing. Records are matched on their
natural keys (client code, licence serial, client + contact email, agent email).
"""
from __future__ import annotations

import tomllib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import Client, Licence
from gateway.refdata.check import (
    LANGUAGES,
    LEVELS,
    Checker,
    RefDataError,
    check_keys,
    normalise_email,
    records,
    validated_agents,
    validated_clients,
    validated_contacts,
    validated_contracts,
    validated_licences,
)
from gateway.refdata.write import (
    ImportReport,
    write_agents,
    write_clients,
    write_contacts,
    write_contracts,
    write_licences,
)

__all__ = ["LANGUAGES", "LEVELS", "ImportReport", "RefDataError", "import_data", "load_file", "normalise_email"]


def load_file(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RefDataError([f"not valid TOML: {exc}"]) from exc


def import_data(session: Session, data: dict[str, Any]) -> ImportReport:
    """Validate `data` then create or update every record. Raises RefDataError and writes
    nothing (the caller rolls back) when any record is wrong. Never commits."""
    check = Checker()
    unknown = set(data) - {"clients", "contracts", "licences", "contacts", "agents"}
    if unknown:
        check.errors.append(f"unknown section(s): {', '.join(sorted(unknown))}")
    clients = validated_clients(records(data, "clients", check), check)
    known_codes = set(clients) | set(session.scalars(select(Client.code)))
    contracts = validated_contracts(records(data, "contracts", check), check, known_codes)
    licences = validated_licences(records(data, "licences", check), check, known_codes)
    contacts = validated_contacts(records(data, "contacts", check), check, known_codes)
    agents = validated_agents(records(data, "agents", check), check)
    check_keys(check, "client code", clients, session.scalars(select(Client.code)))
    check_keys(check, "serial", licences, session.scalars(select(Licence.serial)))
    if check.errors:
        raise RefDataError(check.errors)
    report = ImportReport()
    by_code = write_clients(session, clients, report)
    write_contracts(session, contracts, by_code, report)
    write_licences(session, licences, by_code, report)
    write_contacts(session, contacts, by_code, report)
    write_agents(session, agents, report)
    session.flush()
    return report
