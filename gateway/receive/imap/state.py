"""The door's status, kept as JSON in the State row "imap" for `gateway status`.

Besides the last pass and the last error, it is the door's memory across restarts: per
folder the UIDVALIDITY and the highest UID a pass has seen (so mail someone opened before
the gateway did is not missed), and the too-big messages already reported.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gateway.db import session_scope
from gateway.models import State
from gateway.receive.imap.keys import Folder

# One logger for the whole door, named after the package: operators filter on it.
log = logging.getLogger(__package__)

STATE_KEY = "imap"
TOO_BIG_KEPT = 50  # reports kept in the status


@dataclass
class Counts:
    """What a pass did: stored (new rows), known (stored before, now flagged), too_big
    (left in place) and failed (could not be stored: left untouched), with the error."""
    stored: int = 0
    known: int = 0
    too_big: int = 0
    failed: int = 0
    error: str | None = None

    def add(self, outcome: str) -> None:
        """Count one message under `outcome`, the name of one of the counters."""
        setattr(self, outcome, getattr(self, outcome) + 1)


@dataclass
class DoorStatus:
    """The JSON kept under State "imap"; `folders` maps a folder's label to
    [uidvalidity, highest UID seen]."""
    state: str = "starting"
    last_pass_at: str | None = None
    last_counts: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: str | None = None
    consecutive_failures: int = 0
    next_attempt_at: str | None = None
    too_big: list[dict[str, Any]] = field(default_factory=list)
    folders: dict[str, list[int]] = field(default_factory=dict)

    def mark(self, folder: Folder) -> int | None:
        """The highest UID a pass has seen in `folder`, None when unknown or outdated."""
        seen = self.folders.get(folder.label)
        return seen[1] if seen and seen[0] == folder.uidvalidity else None

    def remember(self, folder: Folder, highest: int) -> None:
        """Record that a pass has read `folder` up to UID `highest`."""
        self.folders[folder.label] = [folder.uidvalidity, highest]

    def reported(self, key: str) -> bool:
        """True when the too-big message `key` was reported already."""
        return any(r.get("key") == key for r in self.too_big)

    def report(self, **report: Any) -> None:
        """Keep a too-big message's report (the latest TOO_BIG_KEPT only)."""
        self.too_big = [*self.too_big, {**report, "at": now()}][-TOO_BIG_KEPT:]

    def passed(self, counts: Counts) -> None:
        """Record a pass's counts; a failure within it is recorded by `failed`."""
        self.last_pass_at = now()
        self.last_counts = {k: v for k, v in asdict(counts).items() if k != "error"}
        if not counts.failed:
            self.state, self.consecutive_failures, self.next_attempt_at = "connected", 0, None

    def failed(self, state: str, error: str, delay: float | None) -> None:
        """Record a failure, and when the next attempt is due (None: no attempt planned)."""
        self.consecutive_failures += 1
        self.state, self.last_error, self.last_error_at = state, error, now()
        self.next_attempt_at = now(delay) if delay is not None else None


def status(session: Session) -> dict[str, Any]:
    """The IMAP door's last recorded state, for `gateway status`; never writes."""
    row = session.get(State, STATE_KEY)
    if row is None:
        return {"state": "never run"}
    try:
        return dict(json.loads(row.value))
    except ValueError:
        return {"state": "unreadable status"}


def load(engine: Engine) -> DoorStatus:
    """A fresh status holding what an earlier run left: the highest UIDs seen, the reports made."""
    try:
        with session_scope(engine) as session:
            kept = status(session)
    except Exception:  # noqa: BLE001 - the database may be down at start; it will say so
        kept = {}
    return DoorStatus(too_big=list(kept.get("too_big", [])), folders=dict(kept.get("folders", {})))


def save(engine: Engine, door: DoorStatus) -> None:
    """Write `door` under State "imap"; never raises (a status must never stop the door)."""
    value = json.dumps(asdict(door))
    try:
        with session_scope(engine) as session:
            row = session.get(State, STATE_KEY)
            if row is None:
                session.add(State(key=STATE_KEY, value=value))
            else:
                row.value = value
    except Exception as exc:  # noqa: BLE001 - the next save tries again
        log.debug("could not save the IMAP status: %s", exc)


def now(later: float = 0.0) -> str:
    """The time (plus `later` seconds) as ISO 8601 UTC, to the second."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=later)).isoformat(timespec="seconds")
