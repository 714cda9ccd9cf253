"""Checking reference data before anything is written: every error is collected."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from gateway.models import reference_key

LEVELS = ("standard", "privilege", "excellence")
LANGUAGES = ("fr", "en")


class RefDataError(Exception):
    """The file is not valid reference data; `errors` names each record and field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def normalise_email(value: Any) -> str | None:
    """A lowercased, syntactically valid address, or None. Never looks up DNS."""
    if not isinstance(value, str) or not value.strip():
        return None
    # Imported here: its tables cost about 35 ms to load, and most mail names no address to check.
    from email_validator import EmailNotValidError, validate_email
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


class Checker:
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


def records(data: dict[str, Any], kind: str, check: Checker) -> list[dict[str, Any]]:
    records = data.get(kind, [])
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        check.errors.append(f"[[{kind}]] must be a list of tables")
        return []
    return records


def check_keys(check: Checker, kind: str, new: Iterable[str], stored: Iterable[str]) -> None:
    """Codes and serials are compared without regard to case, spaces, dashes and dots: two
    that differ only by those would be the same to a customer, so the import refuses them."""
    seen: dict[str, str] = {}
    for value in [*stored, *new]:
        key = reference_key(value)
        other = seen.setdefault(key, value)
        if other != value:
            check.errors.append(f"{kind} {value!r} and {kind} {other!r} differ only by case, spaces, "
                                "dashes or dots: customers could not tell them apart")


def validated_clients(records: list[dict[str, Any]], check: Checker) -> dict[str, dict[str, Any]]:
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


def validated_contracts(records: list[dict[str, Any]], check: Checker,
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


def validated_licences(records: list[dict[str, Any]], check: Checker,
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


def validated_contacts(records: list[dict[str, Any]], check: Checker,
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


def validated_agents(records: list[dict[str, Any]], check: Checker) -> dict[str, dict[str, Any]]:
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
