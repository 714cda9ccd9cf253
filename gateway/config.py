"""Settings: one frozen object loaded once from a TOML file and the environment.

Configuration is passed, never imported: `load()` builds a `Settings`, and tests derive
variants with `dataclasses.replace`. Relative paths in a file are resolved against the
directory that holds the file, so the gateway behaves the same whatever its working
directory (an MTA runs pipe commands from anywhere).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any

from gateway.settings import (
    DEFAULT_CONFIG,
    PROJECT_DIR,
    CaseSettings,
    ContactSettings,
    DatabaseSettings,
    ImapSettings,
    JobSettings,
    LicenceSettings,
    LogSettings,
    OutboundSettings,
    ReminderSettings,
    SalesAdminSettings,
    Settings,
    SlaSettings,
    SmtpSettings,
    SupportSettings,
)

__all__ = [
    "CaseSettings",
    "ConfigError",
    "ContactSettings",
    "DEFAULT_CONFIG",
    "DatabaseSettings",
    "ImapSettings",
    "JobSettings",
    "LicenceSettings",
    "LogSettings",
    "OutboundSettings",
    "PROJECT_DIR",
    "ReminderSettings",
    "SalesAdminSettings",
    "Settings",
    "SlaSettings",
    "SmtpSettings",
    "SupportSettings",
    "load",
]


class ConfigError(Exception):
    """The configuration file is missing, unreadable or holds a wrong value."""


_SECTIONS: dict[str, type] = {
    "database": DatabaseSettings, "smtp": SmtpSettings, "imap": ImapSettings,
    "outbound": OutboundSettings, "support": SupportSettings,
    "sales_admin": SalesAdminSettings, "reminders": ReminderSettings,
    "cases": CaseSettings, "sla": SlaSettings, "contacts": ContactSettings,
    "jobs": JobSettings, "log": LogSettings, "licences": LicenceSettings,
}


def _check_jobs(key: str, value: Any) -> Any:
    """A time zone that exists and times of day written HH:MM, or a ConfigError now rather
    than a scheduler that fails at start."""
    if key == "timezone":
        try:
            zoneinfo.ZoneInfo(str(value))
        except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
            raise ConfigError(f"[jobs] timezone: unknown time zone {value!r}") from exc
    if key.endswith("_at"):
        try:
            dt.time.fromisoformat(str(value))
        except ValueError as exc:
            raise ConfigError(f"[jobs] {key}: expected a time of day such as \"08:00\", got {value!r}") from exc
    return value


def _coerce(section: str, key: str, value: Any, current: Any) -> Any:
    if section == "jobs" and isinstance(current, str):
        return _check_jobs(key, value)
    if section == "sla" and key == "first_response_hours":
        try:
            return {int(k): int(v) for k, v in dict(value).items()}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[sla] first_response_hours: {exc}") from exc
    if isinstance(current, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(current, (int, float)) and not isinstance(value, (int, float)):
        try:
            return type(current)(value)
        except ValueError as exc:
            raise ConfigError(f"[{section}] {key}: expected a number, got {value!r}") from exc
    return value


def _build(section: str, cls: type, values: dict[str, Any]) -> Any:
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"[{section}] has no setting {key!r} (known: {', '.join(sorted(known))})")
        changes[key] = _coerce(section, key, value, getattr(defaults, key))
    env_prefix = f"GATEWAY_{section.upper()}_"
    for key in known:
        env = os.environ.get(env_prefix + key.upper())
        if env is not None:
            changes[key] = _coerce(section, key, env, getattr(defaults, key))
    return dataclasses.replace(defaults, **changes)


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings from `path`, $GATEWAY_CONFIG or config/gateway.toml, then the environment.

    Environment variables named GATEWAY_<SECTION>_<KEY> (e.g. GATEWAY_DATABASE_URL) override
    the file. A missing default file is not an error: the embedded defaults apply.
    """
    chosen = path or os.environ.get("GATEWAY_CONFIG")
    file = Path(chosen) if chosen else DEFAULT_CONFIG
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {file}: {exc}") from exc
        base_dir = str(file.resolve().parent)
    elif chosen:
        raise ConfigError(f"configuration file {file} does not exist")
    else:
        base_dir = os.getcwd()
    unknown = set(data) - set(_SECTIONS) - {"templates_dir"}
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(sorted(unknown))}")
    sections = {name: _build(name, cls, data.get(name, {})) for name, cls in _SECTIONS.items()}
    templates = data.get("templates_dir")
    settings = Settings(**sections, base_dir=base_dir)
    if templates:
        settings = dataclasses.replace(settings, templates_dir=str(settings.path(templates)))
    return settings
