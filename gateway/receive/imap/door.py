"""The IMAP door itself: `run_once()` for one pass, or a thread that keeps one connection.

The thread makes a pass, waits for new mail (waiting.py), and makes a pass again. After an
error it logs one line and reconnects after first_delay, twice that, and so on up to
max_delay (1, 2, 4 ... 300 seconds by default). Each outcome is recorded in the status
(state.py) for `gateway status`. The door does nothing after storing: `on_stored(id)` wakes
whoever runs the pipeline.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from gateway.config import Settings
from gateway.receive.imap import state
from gateway.receive.imap.connection import Line, in_clear, where
from gateway.receive.imap.errors import StoreFailed, describe, expected
from gateway.receive.imap.passes import Reader
from gateway.receive.imap.state import Counts
from gateway.receive.imap.waiting import wait

log = logging.getLogger(__package__)


class ImapDoor:
    """Read settings.imap's folders into `intake`; `run_once()` or `start()`/`stop()`."""

    def __init__(self, settings: Settings, engine: Engine, on_stored: Callable[[int], None], *,
                 first_delay: float = 1.0, max_delay: float = 300.0) -> None:
        self.imap, self.engine = settings.imap, engine
        self.first_delay, self.max_delay = first_delay, max_delay
        self.where = where(self.imap)
        self.status = state.load(engine)
        self.stopping = threading.Event()
        self.reader = Reader(settings, engine, on_stored, self.status)
        self._line = Line(settings, self.stopping)
        self._thread: threading.Thread | None = None

    def run_once(self) -> Counts:
        """Connect, make one pass over every folder, log out; record the outcome.

        Raises what `connect` raises, and OSError or IMAPClientError when the connection
        fails during the pass; a message that cannot be stored is counted, not raised.
        """
        counts = Counts()
        try:
            with self._line.open() as client:
                counts = self.reader.run(client)
            self._record(counts)
        except StoreFailed as exc:
            self._failed(exc, None)
        except Exception as exc:
            self._failed(exc, None)
            raise
        return counts

    def start(self) -> None:
        """Read the mailbox in a background thread until `stop()`."""
        if in_clear(self.imap):
            log.warning("IMAP %s: no TLS, the password crosses the network in clear", self.where)
        self._thread = threading.Thread(target=self._serve, name="imap", daemon=True)
        self._thread.start()

    @property
    def up(self) -> bool:
        """The door's thread runs and its last attempt did not fail."""
        alive = self._thread is not None and self._thread.is_alive()
        return alive and self.status.state in ("starting", "connected")

    def stop(self) -> None:
        """Stop the thread promptly: wake its wait, cut its connection, join it."""
        self.stopping.set()
        self._line.cut()
        if self._thread is not None:
            self._thread.join(30)

    def _serve(self) -> None:
        """The thread: connect and serve until stopped; after a failure, wait longer each time."""
        while not self.stopping.is_set():
            try:
                self._connected()
            except Exception as exc:  # noqa: BLE001 - the door must outlive any failure
                if self.stopping.is_set():
                    break
                failures = self.status.consecutive_failures
                delay = min(self.first_delay * 2 ** min(failures, 30), self.max_delay)
                self._failed(exc, delay)
                self.stopping.wait(delay)
        self.status.state, self.status.next_attempt_at = "stopped", None
        state.save(self.engine, self.status)

    def _connected(self) -> None:
        """Passes and waits on one connection until the door stops; raises what ends it."""
        with self._line.open() as client:
            while not self.stopping.is_set():
                self._record(self.reader.run(client))
                wait(client, self.imap, self.status, self.stopping, self._idling)

    def _idling(self) -> None:
        self.status.state = "idle"
        state.save(self.engine, self.status)

    def _record(self, counts: Counts) -> None:
        """Record a pass; raise StoreFailed when a message could not be stored."""
        self.status.passed(counts)
        if counts.failed:
            raise StoreFailed(f"could not store {counts.error}")
        state.save(self.engine, self.status)

    def _failed(self, exc: Exception, delay: float | None) -> None:
        """Record and log a failure; a traceback only for a surprise, and only the first time."""
        what, text = describe(exc)
        self.status.failed(what, text, delay)
        retry = f"; next attempt in {delay:g} s" if delay is not None else ""
        log.warning("IMAP %s: %s%s", self.where, text, retry,
                    exc_info=not expected(exc) and self.status.consecutive_failures == 1)
        state.save(self.engine, self.status)
