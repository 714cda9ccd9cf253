"""`gateway serve`: the SMTP/LMTP and IMAP doors and the health and metrics endpoint (when
enabled) in this process; the pipeline and the scheduler in a worker process, the outbox
sender in another (gateway/worker_process.py), or all of them in threads of this process
with `[serve] worker_process = false` (gateway/worker.py).

A door only stores: once a message is committed it answers and wakes the pipeline.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway import db, heap
from gateway.config import Settings
from gateway.worker import Report, Storing, Worker
from gateway.worker_process import WorkerProcess

if TYPE_CHECKING:  # the doors and the endpoint are imported when enabled, not before
    from gateway.health import Endpoint
    from gateway.metrics import Metrics
    from gateway.receive.imap import ImapDoor
    from gateway.receive.smtp import DoorController

log = logging.getLogger(__name__)


def _unseen(_event: tuple[object, ...]) -> None:
    """What the workers report, when no /metrics shows it."""


class Gateway:
    """Everything `serve` runs; `start()` then `stop()` (tests use it the same way)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine = settings, engine
        db.checkpoints_apart(engine)  # the pipeline checkpoints (gateway/worker.py)
        self.metrics: Metrics | None = None  # counted only for /metrics (prometheus_client: 2 MB)
        report: Report = _unseen
        if settings.health.enabled:
            from gateway.metrics import Metrics
            self.metrics = Metrics(engine)
            report = self.metrics.apply
        self.storing = Storing.shared() if settings.serve.worker_process else Storing()
        self.worker: Worker | WorkerProcess = (
            WorkerProcess(settings, self.storing, report) if settings.serve.worker_process
            else Worker(settings, engine, self.storing, report=report))
        self.door: DoorController | None = None
        self.imap_door: ImapDoor | None = None
        self.endpoint: Endpoint | None = None

    def parts(self) -> dict[str, str]:
        """Each part of the gateway: "up", "down", or "disabled" by the configuration."""
        def state(enabled: bool, up: bool) -> str:
            return "disabled" if not enabled else "up" if up else "down"
        s, worker = self.settings, self.worker.up()
        return {
            "smtp": state(s.smtp.enabled, self.door is not None and self.door.serving),
            "imap": state(s.imap.enabled, self.imap_door is not None and self.imap_door.up),
            "pipeline": state(True, worker["pipeline"]),
            "outbox": state(True, worker["outbox"]),
            "scheduler": state(s.jobs.enabled, worker["scheduler"]),
        }

    def start(self) -> None:
        heap.give_back_big_blocks()
        self.worker.start()
        if self.settings.smtp.enabled:
            from gateway.receive import smtp
            self.door = smtp.start(self.settings, self.engine, lambda _id: self.worker.wake(), self.storing)
        if self.settings.imap.enabled:
            from gateway.receive import imap
            self.imap_door = imap.ImapDoor(self.settings, self.engine, lambda _id: self.worker.wake())
            self.imap_door.start()
        if self.metrics is not None:  # last: its first answer already sees every part up
            from gateway.health import Endpoint
            health = self.settings.health
            self.endpoint = Endpoint(health.host, health.port, self.engine, self.parts, self.metrics.registry)
            self.endpoint.start()

    def stop(self) -> None:
        if self.imap_door is not None:
            self.imap_door.stop()
        if self.door is not None:
            self.door.stop()
        self.worker.stop()
        if self.endpoint is not None:
            self.endpoint.stop()
