"""A database that stops a command, told in one line: which file or server, what is wrong
with it, and what to do. The traceback goes to the log at debug level (`gateway -v`).
"""
from __future__ import annotations

import os
import pwd
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from gateway.receive.pipe_exit import reason as first_line


def explain(url: str, exc: BaseException) -> str:
    """One line for an error `exc` met on the database at `url`."""
    reason = first_line(exc)
    if url.startswith("sqlite"):
        return _sqlite(Path(url.removeprefix("sqlite:///")), reason, exc)
    return _server(url, reason)


def _sqlite(db: Path, reason: str, exc: BaseException) -> str:
    me = _user(os.geteuid())
    lowered = reason.lower()
    if "readonly" in lowered or "read-only" in lowered:
        culprit = next((p for p in _files(db) if p.exists() and not os.access(p, os.W_OK)), None)
        if culprit is not None:
            return (f"database {db} is read-only for user {me}: {culprit} belongs to {_owner(culprit)}; "
                    f"give the files back to the user that runs the gateway (chown {me}: {db}*)")
        return (f"database {db} is read-only ({reason}): check the owner and mode of {db}, "
                f"its -wal and -shm files and its folder (chown them to the user that runs the gateway)")
    if "unable to open" in lowered or isinstance(exc, OSError):
        return (f"cannot open database {db} ({reason}): its folder {db.parent} must exist and be "
                f"writable by user {me} (owner: {_owner(db.parent)})")
    if "locked" in lowered or "busy" in lowered:
        return (f"database {db} is locked by another process ({reason}): try again; a process that "
                f"keeps it locked is stuck (fuser -v {db})")
    return f"database {db}: {reason}"


def _server(url: str, reason: str) -> str:
    try:
        parsed = make_url(url)
        where = f"{parsed.get_backend_name()} server {parsed.host or 'localhost'}:{parsed.port or 5432}"
        where += f" (database {parsed.database})"
    except ArgumentError:
        where = "the database server of [database] url"
    lowered = reason.lower()
    if "read-only" in lowered or "read only" in lowered:
        return f"{where} is read-only ({reason}): point [database] url at the primary server"
    if "connect" in lowered or "connection" in lowered or "timeout" in lowered:
        return f"cannot reach {where} ({reason}): is it running, and does [database] url name it?"
    return f"{where}: {reason}"


def _files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), db.parent]


def _owner(path: Path) -> str:
    try:
        return _user(path.stat().st_uid)
    except OSError:
        return "nobody (missing)"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)

