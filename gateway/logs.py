"""Where a command's log goes: standard error by default, a file when `[log] file` is set,
and for `ingest` behind an MTA's pipe, syslog or nowhere.

An MTA's pipe reads what the command writes and puts it in its own log or in a bounce, so
`ingest` reading standard input keeps its log off standard error. A handler set here never
raises and never writes about its own failures: a log that cannot be written is dropped,
and never changes what a command does or its exit status.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import logging.handlers
import os
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
SYSLOG_FORMAT = "gateway[%(process)d]: %(levelname)s %(name)s: %(message)s"
SYSLOG_SOCKET = "/dev/log"
NOISY = ("alembic", "mail.log", "apscheduler")

_ours: logging.Handler | None = None  # the one handler this module put on the root logger


class _Quiet:
    """A handler that drops a record it cannot write instead of printing "Logging error"."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        return None


class _Stream(_Quiet, logging.StreamHandler):  # type: ignore[type-arg]
    pass


class _File(_Quiet, logging.FileHandler):
    pass


class _Syslog(_Quiet, logging.handlers.SysLogHandler):
    pass


class _Nowhere(_Quiet, logging.NullHandler):
    """Stands on the root logger so that logging's last resort never writes to stderr."""


def setup(verbose: bool) -> None:
    """Log INFO (DEBUG when `verbose`) to standard error, as every command does unless told
    otherwise. A root logger that already has handlers (a test runner's) is left alone."""
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    root = logging.getLogger()
    if root.handlers:
        return
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    _use(_Stream(), FORMAT)


def for_pipe(address: str = SYSLOG_SOCKET) -> None:
    """Send the log to syslog (facility mail, ident "gateway") when the socket `address`
    exists, else nowhere: never to the standard error an MTA reads. Python's warnings,
    which would go there, join the log."""
    logging.captureWarnings(True)
    handler: logging.Handler = _Nowhere()
    if os.path.exists(address):
        # A socket nobody listens on leaves the log nowhere.
        with contextlib.suppress(OSError):
            handler = _Syslog(address=address, facility=logging.handlers.SysLogHandler.LOG_MAIL)
    _use(handler, SYSLOG_FORMAT)


def to_file(path: Path) -> None:
    """Append the log to `path` from now on; keeps the current destination when the file
    cannot be opened (the log must never stop a command)."""
    try:
        handler = _File(path, encoding="utf-8")
    except OSError:
        return
    _use(handler, FILE_FORMAT)


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line (a traceback included, its newlines
    escaped): `time` (UTC, ISO 8601), `level`, `logger`, `message`, `process`, `thread`,
    and `exception` when there is one. For journald's JSON fields and log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
        event = {"time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                 "process": record.process, "thread": record.threadName}
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False)


def as_json() -> None:
    """From now on, this module's handler writes one JSON object per line (JsonLines)."""
    if _ours is not None:
        _ours.setFormatter(JsonLines())


def is_json() -> bool:
    """Whether this module's handler writes JSON lines (as_json)."""
    return _ours is not None and isinstance(_ours.formatter, JsonLines)


def close() -> None:
    """Take this module's handler off the root logger and close it; never raises."""
    global _ours
    logging.captureWarnings(False)
    if _ours is None:
        return
    logging.getLogger().removeHandler(_ours)
    with contextlib.suppress(OSError, ValueError):
        _ours.close()
    _ours = None


def _use(handler: logging.Handler, fmt: str) -> None:
    global _ours
    close()
    handler.setFormatter(logging.Formatter(fmt))
    logging.getLogger().addHandler(handler)
    _ours = handler
