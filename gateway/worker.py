"""The work behind the doors of `gateway serve`: the pipeline, the outbox sender and the
scheduled jobs, in a worker process of its own (`WorkerProcess`) or in threads of the
serving process (`Worker`, with `[serve] worker_process = false`).

The pipeline processes pending messages (also those left by a crash or by `gateway
ingest`) in short transactions and wakes the sender after each commit, so an answer
leaves as soon as its case is written. Both loops also wake on a timer, so nothing waits
for a signal that never comes. On SQLite the doors go first: while one of them waits to
store a message (`Storing`), the pipeline commits what it has decided and lets it in.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from gateway.config import Settings
from gateway.outbound import send
from gateway.pipeline import reading, run

if TYPE_CHECKING:  # the scheduler is imported when enabled, not before
    from gateway.scheduler import Scheduler

log = logging.getLogger(__name__)
BATCH = 50              # messages read ahead per round: an answer waits for at most these
DOOR_FIRST = 0.05       # seconds the pipeline waits at most for a door to store


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


class _Counter:
    """A counter for one process, shaped like multiprocessing's shared Value."""

    def __init__(self) -> None:
        self.value = 0
        self.lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self.lock


class Storing:
    """How many door sessions wait to store a message, shared by the doors and the worker;
    `Storing.shared()` keeps the counter in shared memory, for a worker process."""

    def __init__(self, counter: Any = None) -> None:
        self.counter = counter if counter is not None else _Counter()

    @classmethod
    def shared(cls) -> Storing:
        import multiprocessing
        return cls(multiprocessing.get_context("spawn").Value("i", 0))

    @contextmanager
    def one(self) -> Iterator[None]:
        """Around one store: the pipeline gives way meanwhile."""
        with self.counter.get_lock():
            self.counter.value += 1
        try:
            yield
        finally:
            with self.counter.get_lock():
                self.counter.value -= 1

    def waiting(self) -> bool:
        return bool(self.counter.value > 0)

    def let_in(self) -> None:
        """Wait until no door waits any more, `DOOR_FIRST` seconds at most."""
        deadline = time.monotonic() + DOOR_FIRST
        while self.waiting() and time.monotonic() < deadline:
            time.sleep(0.001)


def process_pending(engine: Engine, settings: Settings, on_commit: Callable[[], None],
                    storing: Storing | None = None) -> int:
    """Process what is pending, `BATCH` messages at a time; `on_commit()` after each commit.
    With `storing` (SQLite), a transaction ends as soon as a door waits to store."""
    def committed() -> None:
        on_commit()
        if storing is not None:
            storing.let_in()

    pace = run.Pace(storing.waiting if storing is not None else lambda: False, committed)
    done = 0
    while ids := reading.pending_ids(engine, BATCH):
        done += sum(o is not None for o in run.process_many(engine, settings, ids, pace=pace))
    return done


class Worker:
    """The pipeline, the outbox sender and the scheduler, as threads of this process."""

    def __init__(self, settings: Settings, engine: Engine, storing: Storing) -> None:
        self.settings, self.engine = settings, engine
        sqlite = engine.dialect.name == "sqlite"
        self.sender = Loop("outbox", lambda: send.drain(engine, settings), settings.outbound.poll_seconds)
        self.pipeline = Loop("pipeline", lambda: process_pending(
            engine, settings, self.sender.wake.set, storing if sqlite else None), 5.0)
        self.scheduler: Scheduler | None = None

    def start(self) -> None:
        self.pipeline.start()
        self.sender.start()
        if self.settings.jobs.enabled:
            from gateway.scheduler import Scheduler
            self.scheduler = Scheduler(self.settings, self.engine)
            self.scheduler.start()

    def wake(self) -> None:
        self.pipeline.wake.set()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        self.pipeline.stop()
        self.sender.stop()
