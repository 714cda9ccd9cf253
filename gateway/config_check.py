"""Each configuration value checked against its setting: its type (that of the embedded
default), the values allowed where there is a list of them, and the ranges that make
sense. Pure: `value` returns the value to keep or raises `Invalid` saying what is allowed;
`gateway.config` names the file, the section and the key around it.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import zoneinfo
from collections.abc import Callable
from typing import Any

from gateway.settings import LANGUAGES, TRANSPORTS

TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
# Settings that must be above zero (a delay of 0 seconds would spin; a limit of 0 bytes
# would refuse everything). Other numbers may be 0, and none may be negative.
POSITIVE = {"poll_seconds", "idle_seconds", "timeout_seconds", "claim_seconds", "max_message_bytes",
            "give_up_after_hours", "reminders_every_minutes", "escalation_every_minutes",
            "notice_window_minutes", "registration_code_hours", "priority_first_response_hours"}
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("outbound", "transport"): TRANSPORTS,
    ("support", "language"): LANGUAGES,
}
SLA_EXAMPLE = "a table of criticality (1 to 4) = hours, e.g. { 1 = 2, 2 = 8, 3 = 24, 4 = 72 }"


class Invalid(Exception):
    """A value that does not fit its setting: what is wrong, and what is allowed."""

    def __init__(self, problem: str, allowed: str) -> None:
        super().__init__(problem)
        self.problem, self.allowed = problem, allowed


def shown(value: Any) -> str:
    """A value as TOML would write it (strings in double quotes), for an error message."""
    if isinstance(value, tuple):
        value = list(value)
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def value(section: str, key: str, raw: Any, default: Any, from_env: bool) -> Any:
    """`raw` (from the file, or a string from the environment when `from_env`) as the
    setting's value; raises Invalid when it does not fit."""
    if section == "sla" and key == "first_response_hours":
        return _sla(raw, from_env)
    typed = _typed(raw, default, from_env)
    choices = CHOICES.get((section, key))
    if choices is not None and typed not in choices:
        raise Invalid("not a known value", " or ".join(shown(c) for c in choices))
    if isinstance(typed, (int, float)) and not isinstance(typed, bool):
        _in_range(key, typed)
    check = SPECIAL.get((section, key)) or SPECIAL.get((section, "*" + key.rpartition("_")[2]))
    if check is not None:
        check(typed)
    return typed


def _typed(raw: Any, default: Any, from_env: bool) -> Any:
    if isinstance(default, bool):
        return _bool(raw, from_env)
    if isinstance(default, int):
        number = _number(raw, from_env, int)
        if not isinstance(number, int):
            raise Invalid("not a whole number", "a whole number")
        return number
    if isinstance(default, float):
        return float(_number(raw, from_env, float))
    if isinstance(default, tuple):
        if from_env:
            return tuple(f.strip() for f in str(raw).split(",") if f.strip())
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise Invalid("not a list of strings", 'a list of strings, e.g. ["INBOX", "Support"]')
        return tuple(raw)
    if not isinstance(raw, str):
        raise Invalid("not a string", "a string in double quotes")
    return raw


def _bool(raw: Any, from_env: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if from_env and str(raw).strip().lower() in TRUE + FALSE:
        return str(raw).strip().lower() in TRUE
    raise Invalid("not true or false", "true or false" + (" (or 1/0, yes/no, on/off)" if from_env else ""))


def _number(raw: Any, from_env: bool, kind: Callable[[str], int | float]) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)) or (isinstance(raw, str) and not from_env):
        raise Invalid("not a number", "a whole number" if kind is int else "a number")
    if isinstance(raw, str):
        try:
            return kind(raw.strip())
        except ValueError as exc:
            raise Invalid("not a number", "a whole number" if kind is int else "a number") from exc
    return float(raw) if isinstance(raw, float) else int(raw)


def _in_range(key: str, number: float) -> None:
    if key == "port":
        if not 1 <= number <= 65535:
            raise Invalid("not a TCP port", "a port from 1 to 65535")
    elif key in POSITIVE and number <= 0:
        raise Invalid("must be above zero", "a number above zero")
    elif number < 0:
        raise Invalid("must not be negative", "zero or more")


def _sla(raw: Any, from_env: bool) -> dict[int, int]:
    if from_env and isinstance(raw, str):
        raw = dict(pair.partition("=")[::2] for pair in raw.split(",") if pair.strip())
    try:
        table = dict(raw)
        if not from_env and not all(type(v) is int for v in table.values()):
            raise ValueError("hours must be whole numbers")  # 1.5 would silently be 1, true 1
        hours = {int(k): int(v) for k, v in table.items()}
    except (TypeError, ValueError) as exc:
        raise Invalid("not a table of hours", SLA_EXAMPLE) from exc
    if any(k not in (1, 2, 3, 4) or v <= 0 for k, v in hours.items()):
        raise Invalid("criticality or hours out of range", SLA_EXAMPLE)
    return hours


def _timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        raise Invalid("unknown time zone", 'a time zone of the tz database, e.g. "Europe/Paris"') from exc


def _time_of_day(text: str) -> None:
    try:
        dt.time.fromisoformat(text)
    except ValueError as exc:
        raise Invalid("not a time of day", 'a time of day such as "08:00"') from exc


def _holidays(spec: str) -> None:
    allowed = 'a country code of the holidays library with an optional subdivision, e.g. "FR" or "FR-57"'
    if not re.fullmatch(r"[A-Z]{2,3}(-[A-Z0-9]{1,6})?", spec):
        raise Invalid("not a country code", allowed)
    from gateway import workdays
    try:
        workdays.public_holidays(spec)
    except NotImplementedError as exc:
        raise Invalid("no such country or subdivision", allowed) from exc


def _address(text: str, optional: bool = False) -> None:
    if optional and not text:
        return
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        example = "an address such as assistance@example.com"
        raise Invalid("not an email address", example + (' or ""' if optional else ""))


def _database(url: str) -> None:
    if not url.startswith(("sqlite://", "postgresql")):
        raise Invalid("not a database URL", '"sqlite:///PATH" or "postgresql+psycopg://USER:PASSWORD@HOST/NAME"')


def _loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise Invalid("not a loopback address", '"127.0.0.1", "::1" or "localhost"')


SPECIAL: dict[tuple[str, str], Callable[[Any], None]] = {
    ("jobs", "timezone"): _timezone,
    ("jobs", "*at"): _time_of_day,
    ("jobs", "holidays"): _holidays,
    ("support", "address"): _address,
    ("support", "lead_address"): lambda text: _address(text, optional=True),
    ("sales_admin", "address"): _address,
    ("database", "url"): _database,
    ("health", "host"): _loopback,
}
