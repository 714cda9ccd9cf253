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

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from gateway.config import Settings
from gateway.db import Checkpoint
from gateway.outbound import send
from gateway.outbound.claims import Turn
from gateway.outbound.relay import Transport

if TYPE_CHECKING:  # the scheduler is imported when enabled, not before
    from gateway.scheduler import Scheduler

log = logging.getLogger(__name__)
# Messages read and parsed ahead per round, before the first of them is decided: FIRST in
# the first round after a wake-up, then twice as many each round up to BATCH (a backlog).
FIRST, BATCH = 4, 32
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


SLOTS = {"serve": 0, "outbox": 1, "pipeline": 2}  # each writing process counts in its own pair


class Storing:
    """The writers that go before the pipeline (the doors, then the sender): how many wait
    for the database or write now, and how many were served so far. Each process counts in
    its own pair of `counter` (its `slot`), so that no lock is shared between processes: a
    lock of this process orders its threads, the others read its pair. A writer gives way
    to those of the slots before its own, each slot served on its own: the sender to the
    doors, the pipeline to both. `Storing.shared()` keeps the counters in shared memory,
    for worker processes (a plain shared array: no semaphore, hence no resource-tracker
    process beside `serve`)."""

    def __init__(self, counter: Any = None, slot: int = 0) -> None:
        self.counter = counter if counter is not None else [0] * (2 * len(SLOTS))
        self.mine = 2 * slot
        self.lock = threading.Lock()

    @classmethod
    def shared(cls) -> Storing:
        from multiprocessing.sharedctypes import RawArray
        return cls(RawArray("i", 2 * len(SLOTS)))

    @contextmanager
    def one(self) -> Iterator[None]:
        """Around one write transaction: the pipeline gives way meanwhile."""
        with self.lock:
            self.counter[self.mine] += 1
        try:
            yield
        finally:
            with self.lock:
                self.counter[self.mine] -= 1
                self.counter[self.mine + 1] += 1

    @contextmanager
    def turn(self) -> Iterator[None]:
        """`one()`, once the writers of the slots before this process's that wait now were
        served (the sender's: the doors', which the flock's line would not put first: a
        door asks for it without waiting, and another writer, waiting in the kernel, takes
        it the moment it is free)."""
        if self.mine:
            self.let_in(range(self.mine // 2))
        with self.one():
            yield

    def waiting(self) -> bool:
        """A writer of any process waits, or writes now."""
        return any(self.counter[0::2])

    def let_in(self, slots: Iterable[int] | None = None) -> None:
        """Wait until the writers of `slots` (default: every process's) waiting now were
        served, each slot counted on its own, `DOOR_FIRST` seconds at most."""
        values = self.counter[:]
        slots = range(len(values) // 2) if slots is None else slots
        due = {s: values[2 * s + 1] + values[2 * s] for s in slots if values[2 * s]}  # its served count then
        deadline = time.monotonic() + DOOR_FIRST
        while due and time.monotonic() < deadline:
            time.sleep(0.0005)
            values = self.counter[:]
            due = {s: count for s, count in due.items() if values[2 * s] and values[2 * s + 1] < count}


Report = Callable[[tuple[Any, ...]], None]  # what the worker did, for /metrics (Metrics.apply)


def process_pending(engine: Engine, settings: Settings, on_commit: Callable[[], None],
                    storing: Storing | None = None, report: Report | None = None,
                    checkpoint: Callable[[], None] = lambda: None) -> int:
    """Process what is pending, `FIRST` then up to `BATCH` messages at a time; `on_commit()`
    after each commit.
    With `storing` (SQLite), a transaction ends as soon as a door waits to store. `report`
    gets ("processed", outcome, seconds) per message (a batch's time shared evenly).
    `checkpoint()` after each commit, once the doors were let in, and at the end."""
    from gateway.pipeline import reading, run  # not imported by a process that only sends

    def committed() -> None:
        on_commit()
        if storing is not None:
            storing.let_in()
        checkpoint()

    pace = (run.Pace(storing.waiting, committed, storing.let_in) if storing is not None
            else run.Pace(committed=committed))
    done, size = 0, FIRST
    while ids := reading.pending_ids(engine, size):
        size = min(BATCH, size * 2)
        started = time.perf_counter()
        outcomes = [o for o in run.process_many(engine, settings, ids, pace=pace) if o is not None]
        done += len(outcomes)
        if report is not None:
            for outcome in outcomes:
                report(("processed", str(outcome.outcome), (time.perf_counter() - started) / len(outcomes)))
    checkpoint()  # what the jobs and the sender wrote, too
    return done


class Sending:
    """The sender's step: drain the outbox through a relay connection kept from one drain to
    the next while each finds something to send (a steady flow of answers pays for one
    connection, not one per pipeline commit), closed after a drain that found nothing."""

    def __init__(self, engine: Engine, settings: Settings, turn: Turn, report: Report) -> None:
        self.engine, self.settings, self.turn, self.report = engine, settings, turn, report
        self.transport = Transport(settings)

    def __call__(self) -> None:
        try:
            counts = send.drain(self.engine, self.settings, turn=self.turn, transport=self.transport)
        except BaseException:
            self.transport.close()
            raise
        if not counts:
            self.transport.close()
        self.report(("drained", counts))


PARTS = ("pipeline", "outbox", "jobs")


class Worker:
    """The pipeline, the outbox sender and the scheduler (or some of them: `parts`), as
    threads of this process. `wake_sender` wakes a sender that runs elsewhere; `report`
    gets what they did, for /metrics."""

    def __init__(self, settings: Settings, engine: Engine, storing: Storing, parts: tuple[str, ...] = PARTS,
                 wake_sender: Callable[[], None] | None = None, report: Report = lambda _event: None) -> None:
        self.settings, self.engine, self.parts, self.report = settings, engine, parts, report
        sqlite = engine.dialect.name == "sqlite"
        turn = storing.turn if sqlite else contextlib.nullcontext
        self.sending = Sending(engine, settings, turn, report)
        self.sender = Loop("outbox", self.sending, settings.outbound.poll_seconds)
        on_commit = wake_sender or self.sender.wake.set
        checkpoint = Checkpoint(engine)
        self.pipeline = Loop("pipeline", lambda: process_pending(
            engine, settings, on_commit, storing if sqlite else None, report, checkpoint), 5.0)
        self.scheduler: Scheduler | None = None

    def _loops(self) -> list[Loop]:
        return [loop for loop in (self.pipeline, self.sender) if loop.name in self.parts]

    def start(self) -> None:
        for loop in self._loops():
            loop.start()
        if self.settings.jobs.enabled and "jobs" in self.parts:
            from gateway.scheduler import Scheduler
            self.scheduler = Scheduler(self.settings, self.engine,
                                       lambda job, outcome: self.report(("job", job, outcome)))
            self.scheduler.start()

    def up(self) -> dict[str, bool]:
        """Whether the pipeline, the sender and the scheduler run (health, /healthz)."""
        return {"pipeline": self.pipeline.is_alive(), "outbox": self.sender.is_alive(),
                "scheduler": self.scheduler is not None and self.scheduler.running}

    def wake(self) -> None:
        """Wake the pipeline (the sender, in a process that runs only the sender)."""
        (self.pipeline if "pipeline" in self.parts else self.sender).wake.set()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        for loop in self._loops():
            loop.stop()
        self.sending.transport.close()
