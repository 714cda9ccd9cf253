"""Settings: one frozen object loaded once from a TOML file and the environment.

Configuration is passed, never imported: `load()` builds a `Settings`, and tests derive
variants with `dataclasses.replace`. Relative paths in a file are resolved against the
directory that holds the file, so the gateway behaves the same whatever its working
directory (an MTA runs pipe commands from anywhere).

There is no silent default: a command reads `--config FILE`, else $GATEWAY_CONFIG, else
/etc/gateway/gateway.toml, and fails when none is there. Every key is checked on load
(gateway/config_check.py): an unknown section or key, a value of the wrong type or not
among those allowed is an error naming the file, the section, the key, the value and
what is allowed.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

from gateway import config_check
from gateway.settings import (
    DEFAULT_CONFIG,
    PROJECT_DIR,
    CaseSettings,
    ContactSettings,
    DatabaseSettings,
    HealthSettings,
    ImapSettings,
    JobSettings,
    LicenceSettings,
    LogSettings,
    OutboundSettings,
    ReminderSettings,
    SalesAdminSettings,
    ServeSettings,
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
    "HealthSettings",
    "ImapSettings",
    "JobSettings",
    "LicenceSettings",
    "LogSettings",
    "OutboundSettings",
    "PROJECT_DIR",
    "ReminderSettings",
    "SalesAdminSettings",
    "ServeSettings",
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
    "jobs": JobSettings, "log": LogSettings, "licences": LicenceSettings, "health": HealthSettings,
    "serve": ServeSettings,
}
_TOP_LEVEL = ("templates_dir",)


def find(path: str | os.PathLike[str] | None = None) -> Path:
    """The configuration file to read: `path`, else $GATEWAY_CONFIG, else DEFAULT_CONFIG;
    a ConfigError when that file does not exist."""
    chosen = path or os.environ.get("GATEWAY_CONFIG")
    file = Path(chosen) if chosen else DEFAULT_CONFIG
    if file.is_file():
        return file
    if chosen:
        raise ConfigError(f"configuration file {file} does not exist")
    # Short enough for the line `ingest` gives an MTA (pipe_exit.REASON_BYTES).
    raise ConfigError(f"no configuration file (no --config FILE, no GATEWAY_CONFIG, no {DEFAULT_CONFIG})")


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings from the file `find` names, then the environment: variables named
    GATEWAY_<SECTION>_<KEY> (e.g. GATEWAY_DATABASE_URL) override the file. Raises
    ConfigError for a missing or unreadable file and for any value that does not fit."""
    file = find(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {file}: {exc}") from exc
    for name, content in data.items():
        if name in _TOP_LEVEL:
            continue
        if not isinstance(content, dict):
            raise ConfigError(f"{file}: {name} = {config_check.shown(content)}: not a setting outside a section; "
                              f"allowed: {', '.join(_TOP_LEVEL)}")
        if name not in _SECTIONS:
            allowed = ", ".join(f"[{s}]" for s in _SECTIONS)
            raise ConfigError(f"{file}: [{name}] is not a section of the configuration; allowed: {allowed}")
    sections = {name: _build(file, name, cls, data.get(name, {})) for name, cls in _SECTIONS.items()}
    settings = Settings(**sections, base_dir=str(file.resolve().parent))
    templates = data.get("templates_dir")
    if templates is not None:
        if not isinstance(templates, str) or not templates:
            raise ConfigError(f"{file}: templates_dir = {config_check.shown(templates)}: "
                              "not a string; allowed: the path of a folder of templates")
        settings = dataclasses.replace(settings, templates_dir=str(settings.path(templates)))
    return settings


def _build(file: Path, section: str, cls: type, values: dict[str, Any]) -> Any:
    defaults = cls()
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    changes = {}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(f"{file}: [{section}] {key} = {config_check.shown(raw)}: no such setting; "
                              f"allowed: {', '.join(known)}")
        changes[key] = _value(f"{file}: [{section}] {key}", section, key, raw, getattr(defaults, key), False)
    for key in known:
        name = f"GATEWAY_{section.upper()}_{key.upper()}"
        env = os.environ.get(name)
        if env is not None:
            where = f"environment {name} ([{section}] {key}, over {file})"
            changes[key] = _value(where, section, key, env, getattr(defaults, key), True)
    return dataclasses.replace(defaults, **changes)


def _value(where: str, section: str, key: str, raw: Any, default: Any, from_env: bool) -> Any:
    try:
        return config_check.value(section, key, raw, default, from_env)
    except config_check.Invalid as exc:
        raise ConfigError(f"{where} = {config_check.shown(raw)}: {exc.problem}; allowed: {exc.allowed}") from exc
