"""`gateway serve`: the SMTP/LMTP and IMAP doors in this process, and the worker (the
pipeline, the outbox sender and the scheduler, gateway/worker.py) in a process of its own,
or in threads of this one with `[serve] worker_process = false`.

A door only stores: once a message is committed it answers and wakes the worker.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway.config import Settings
from gateway.worker import Storing, Worker
from gateway.worker_process import WorkerProcess

if TYPE_CHECKING:  # the doors are imported when enabled, not before
    from gateway.receive.imap import ImapDoor
    from gateway.receive.smtp import DoorController

log = logging.getLogger(__name__)


class Gateway:
    """Everything `serve` runs; `start()` then `stop()` (tests use it the same way)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine = settings, engine
        self.storing = Storing.shared() if settings.serve.worker_process else Storing()
        self.worker: Worker | WorkerProcess = (
            WorkerProcess(settings, self.storing) if settings.serve.worker_process
            else Worker(settings, engine, self.storing))
        self.door: DoorController | None = None
        self.imap_door: ImapDoor | None = None

    def start(self) -> None:
        self.worker.start()
        if self.settings.smtp.enabled:
            from gateway.receive import smtp
            self.door = smtp.start(self.settings, self.engine, lambda _id: self.worker.wake(), self.storing)
        if self.settings.imap.enabled:
            from gateway.receive import imap
            self.imap_door = imap.ImapDoor(self.settings, self.engine, lambda _id: self.worker.wake())
            self.imap_door.start()

    def stop(self) -> None:
        if self.imap_door is not None:
            self.imap_door.stop()
        if self.door is not None:
            self.door.stop()
        self.worker.stop()
