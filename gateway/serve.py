"""`gateway serve`: the SMTP/LMTP and IMAP doors, the pipeline worker, the outbox sender and
the scheduler in one process.

The door only stores; it wakes the worker, which runs the pipeline on pending messages
(also those left by a crash or by `gateway ingest`), and the sender drains the outbox.
Both loops also wake on a timer, so nothing waits for a signal that never comes.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway.config import Settings
from gateway.outbound import send
from gateway.pipeline import run

if TYPE_CHECKING:  # the doors and the scheduler are imported when enabled, not before
    from gateway.receive.imap import ImapDoor
    from gateway.receive.smtp import DoorController
    from gateway.scheduler import Scheduler

log = logging.getLogger(__name__)


class Loop(threading.Thread):
    """Call `step` whenever woken, or every `interval` seconds, until stopped."""

    def __init__(self, name: str, step: Callable[[], object], interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.step, self.interval = step, interval
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                self.step()
            except Exception:
                log.exception("%s failed; retrying", self.name)
            self.wake.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(timeout=30)


def process_pending(engine: Engine, settings: Settings, on_sent: Callable[[], None]) -> int:
    done = 0
    while ids := run.pending_ids(engine):
        for inbound_id in ids:
            if run.process(engine, settings, inbound_id) is not None:
                done += 1
        on_sent()
    return done


class Gateway:
    """Everything `serve` runs; `start()` then `stop()` (tests use it the same way)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine = settings, engine
        self.sender = Loop("outbox", lambda: send.drain(engine, settings), settings.outbound.poll_seconds)
        self.worker = Loop("pipeline", lambda: process_pending(engine, settings, self.sender.wake.set), 5.0)
        self.door: DoorController | None = None
        self.imap_door: ImapDoor | None = None
        self.scheduler: Scheduler | None = None

    def start(self) -> None:
        self.worker.start()
        self.sender.start()
        if self.settings.smtp.enabled:
            from gateway.receive import smtp
            self.door = smtp.start(self.settings, self.engine, lambda _id: self.worker.wake.set())
        if self.settings.imap.enabled:
            from gateway.receive import imap
            self.imap_door = imap.ImapDoor(self.settings, self.engine, lambda _id: self.worker.wake.set())
            self.imap_door.start()
        if self.settings.jobs.enabled:
            from gateway.scheduler import Scheduler
            self.scheduler = Scheduler(self.settings, self.engine)
            self.scheduler.start()

    def stop(self) -> None:
        if self.imap_door is not None:
            self.imap_door.stop()
        if self.door is not None:
            self.door.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.worker.stop()
        self.sender.stop()
