"""`gateway serve`: the SMTP/LMTP and IMAP doors, the pipeline worker, the outbox sender,
the scheduler, and the health and metrics endpoint when enabled, in one process.

The door only stores; it wakes the worker, which runs the pipeline on pending messages
(also those left by a crash or by `gateway ingest`), and the sender drains the outbox.
Both loops also wake on a timer, so nothing waits for a signal that never comes.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from gateway.config import Settings
from gateway.health import Endpoint
from gateway.metrics import Metrics
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


def process_pending(engine: Engine, settings: Settings, on_sent: Callable[[], None],
                    metrics: Metrics | None = None) -> int:
    """Run the pipeline on every pending message; `metrics` times each one."""
    done = 0
    while ids := run.pending_ids(engine):
        for inbound_id in ids:
            started = time.perf_counter()
            outcome = run.process(engine, settings, inbound_id)
            if outcome is not None:
                done += 1
                if metrics is not None:
                    metrics.processing.labels(str(outcome.outcome)).observe(time.perf_counter() - started)
        on_sent()
    return done


class Gateway:
    """Everything `serve` runs; `start()` then `stop()` (tests use it the same way)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine = settings, engine
        self.metrics = Metrics(engine)
        self.sender = Loop("outbox", lambda: self.metrics.drained(send.drain(engine, settings)),
                           settings.outbound.poll_seconds)
        self.worker = Loop("pipeline", lambda: process_pending(engine, settings, self.sender.wake.set, self.metrics),
                           5.0)
        self.door: DoorController | None = None
        self.imap_door: ImapDoor | None = None
        self.scheduler: Scheduler | None = None
        self.endpoint: Endpoint | None = None

    def parts(self) -> dict[str, str]:
        """Each part of the gateway: "up", "down", or "disabled" by the configuration."""
        def state(enabled: bool, up: bool) -> str:
            return "disabled" if not enabled else "up" if up else "down"
        s = self.settings
        return {
            "smtp": state(s.smtp.enabled, self.door is not None and self.door.serving),
            "imap": state(s.imap.enabled, self.imap_door is not None and self.imap_door.up),
            "pipeline": state(True, self.worker.is_alive()),
            "outbox": state(True, self.sender.is_alive()),
            "scheduler": state(s.jobs.enabled, self.scheduler is not None and self.scheduler.running),
        }

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
            self.scheduler = Scheduler(self.settings, self.engine,
                                       lambda job, outcome: self.metrics.job_runs.labels(job, outcome).inc())
            self.scheduler.start()
        if self.settings.health.enabled:  # last: its first answer already sees every part up
            health = self.settings.health
            self.endpoint = Endpoint(health.host, health.port, self.engine, self.parts, self.metrics.registry)
            self.endpoint.start()

    def stop(self) -> None:
        if self.imap_door is not None:
            self.imap_door.stop()
        if self.door is not None:
            self.door.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.worker.stop()
        self.sender.stop()
        if self.endpoint is not None:
            self.endpoint.stop()
