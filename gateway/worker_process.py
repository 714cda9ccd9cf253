"""The work behind the doors of `gateway serve` in processes of their own, so that the
doors' interpreter never waits for it (Python runs one thread at a time per process): one
process for the pipeline and the scheduled jobs, one for the outbox sender.

The serving process starts them (forked before it starts any thread, so that they share
the pages of the interpreter and the libraries it loaded; spawned, as fresh interpreters,
when one is started again; either opens its own database connections), wakes the pipeline
by writing a byte to its pipe after each message a door stored (the pipeline wakes the
sender the same way after each commit), and starts either again, a second later, should it
die. The doors open once both are ready (modules imported, everyday templates compiled;
`READY_SECONDS` at most): the first messages are not answered seconds late. They die with
the serving process: when the pipe's writing end closes (the serving process is gone,
however it ended), a worker exits at once, as if killed with it; whatever it was writing
is rolled back and done again by the next one. `stop()` asks them to finish what they are
doing and leave (SIGTERM). What a worker runs beside its loops: worker_child.py.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

from gateway import heap, logs
from gateway.config import Settings
from gateway.worker import SLOTS, Report, Storing
from gateway.worker_child import listen, reporter, waker, warm_up

log = logging.getLogger(__name__)
RESTART_SECONDS = 1.0
READY_SECONDS = 30.0    # the serving process waits at most this for its workers to be ready
CONTEXT = multiprocessing.get_context("spawn")
FORK = multiprocessing.get_context("fork")
SIGNALS = {signal.SIGTERM, signal.SIGINT}


class Child:
    """One worker process running some `parts` of the worker, and the pipe that wakes it."""

    def __init__(self, name: str, parts: tuple[str, ...]) -> None:
        self.name, self.parts = name, parts
        self.reading, self.writing = CONTEXT.Pipe(duplex=False)
        self.ready = threading.Event()  # it reported ("ready", parts)
        os.set_blocking(self.writing.fileno(), False)  # a door never waits for a worker
        self.process: Any = None

    def wake(self) -> None:
        """Something is waiting; never blocks (a full pipe wakes it anyway)."""
        with contextlib.suppress(OSError):  # BlockingIOError too
            os.write(self.writing.fileno(), b"\0")

    def start(self, settings: Settings, storing: Storing, wakes: Connection | None, reports: Connection,
              others: tuple[Connection, ...] | None = None) -> None:
        """Spawn the process; fork it when given the `others` pipe ends, which it closes."""
        log_form = (logging.getLogger().getEffectiveLevel() <= logging.DEBUG, logs.is_json())
        self.ready.clear()
        context = CONTEXT if others is None else FORK
        self.process = context.Process(target=main, name=f"gateway-{self.name}", daemon=True, args=(
            settings, self.parts, self.reading, wakes, reports, storing.counter, log_form, others or ()))
        # A forked child has the serving process's signal handlers until `main` sets its own:
        # SIGTERM and SIGINT wait meanwhile (then reach `main`'s), in this process too.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS) if others is not None else None
        try:
            with _main_not_imported():
                self.process.start()
        finally:
            if held is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def up(self) -> bool:
        return self.process is not None and bool(self.process.is_alive())

    def stop(self, timeout: float) -> None:
        process = self.process
        if process is not None and process.is_alive():
            process.terminate()
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()

    def close(self) -> None:
        self.writing.close()
        self.reading.close()


@contextlib.contextmanager
def _main_not_imported() -> Iterator[None]:
    """Start a process without the serving process's `__main__` (the `gateway` script):
    a spawned child imports it first, and with it the whole command line and everything
    its commands import (about 15 MB a worker); `main` imports what a worker needs.
    Only this module's threads start processes, and nothing else reads `__file__`."""
    module = sys.modules["__main__"]
    path = module.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            module.__file__ = path


class WorkerProcess:
    """Start, wake, watch and stop the worker processes; what they report (for /metrics)
    goes to `report` in this process."""

    def __init__(self, settings: Settings, storing: Storing, report: Report) -> None:
        self.settings, self.storing, self.report = settings, storing, report
        self.reports, self.reporting = CONTEXT.Pipe(duplex=False)
        self.sender = Child("outbox", ("outbox",))
        self.pipeline = Child("pipeline", ("pipeline", "jobs"))
        self.stopping = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)

    @property
    def pid(self) -> int | None:
        """The pipeline's process."""
        return None if self.pipeline.process is None else int(self.pipeline.process.pid)

    def start(self) -> None:
        """Fork the workers while this process runs no other thread: they share its pages
        until one of them writes there (the interpreter and the libraries are loaded once).
        A worker started again later is spawned: a fork beside running threads could copy a
        lock one of them holds (the SQLite writers' line, a library's mutex). The pipeline's
        warm-up is done here first: its modules and templates then sit in shared pages
        (warmed up in the pipeline's process, they cost about 4 MB more at rest)."""
        fork = threading.active_count() == 1
        if fork:
            warm_up(self.settings, self.pipeline.parts)
            gc.freeze()  # the collector would write into every object it visits, copying its page
        for child in (self.sender, self.pipeline):
            self._start(child, fork)
        self.watcher.start()
        threading.Thread(target=self._collect, name="worker-reports", daemon=True).start()
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until both workers are ready, one of them died, or `READY_SECONDS` passed."""
        deadline = time.monotonic() + READY_SECONDS
        for child in (self.pipeline, self.sender):
            while not child.ready.wait(0.05):
                if not child.up() or time.monotonic() > deadline:
                    log.warning("the %s process is not ready; the doors open all the same", child.name)
                    return

    def up(self) -> dict[str, bool]:
        """Whether the worker processes run (the scheduler runs in the pipeline's)."""
        return {"pipeline": self.pipeline.up(), "outbox": self.sender.up(),
                "scheduler": self.settings.jobs.enabled and self.pipeline.up()}

    def wake(self) -> None:
        self.pipeline.wake()

    def stop(self, timeout: float = 60) -> None:
        self.stopping.set()
        self.watcher.join(timeout=5)
        for child in (self.pipeline, self.sender):
            child.stop(timeout)
            child.close()
        self.reporting.close()
        self.reports.close()

    def _collect(self) -> None:
        while True:
            try:
                event = self.reports.recv()
            except (EOFError, OSError):
                return
            if event[0] == "ready":
                for child in (self.pipeline, self.sender):
                    if child.parts == event[1]:
                        child.ready.set()
                continue
            try:
                self.report(event)
            except Exception:
                log.exception("could not count %r", event)

    def _start(self, child: Child, fork: bool = False) -> None:
        wakes = self.sender.writing if child is self.pipeline else None
        ends = (self.sender.reading, self.sender.writing, self.pipeline.reading, self.pipeline.writing,
                self.reports, self.reporting)
        # A forked child closes the pipe ends that are not its own: held open, the end of its
        # own pipe would never tell it that the serving process is gone.
        others = tuple(e for e in ends if all(e is not own for own in (child.reading, wakes, self.reporting)))
        child.start(self.settings, self.storing, wakes, self.reporting, others if fork else None)

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            for child in (self.pipeline, self.sender):
                if child.process.is_alive():
                    continue
                log.error("the %s process ended (exit status %s); starting it again", child.name,
                          child.process.exitcode)
                if self.stopping.wait(RESTART_SECONDS):
                    return
                self._start(child)
                child.wake()


def main(settings: Settings, parts: tuple[str, ...], reading: Connection, wakes: Connection | None,
         reports: Connection, counter: Any, log_form: tuple[bool, bool], others: tuple[Connection, ...] = ()) -> None:
    """A worker process: run its parts until SIGTERM, or until the serving process is gone."""
    for end in others:
        end.close()
    with contextlib.suppress(OSError):  # its name in ps and top: gateway-pipeline, gateway-outbox
        Path("/proc/self/comm").write_text(f"gateway-{parts[0]}")
    from gateway.db import checkpoints_apart, make_engine
    heap.give_back_big_blocks()  # a spawned worker (a forked one has it already)
    from gateway.worker import Worker
    verbose, json_lines = log_form
    logs.setup(verbose)
    if settings.log.file:
        logs.to_file(settings.path(settings.log.file))
    if json_lines:
        logs.as_json()
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the serving process, which stops us
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    engine = make_engine(settings)
    checkpoints_apart(engine)
    wake_sender = None if wakes is None else waker(wakes)
    report = reporter(reports)
    storing = Storing(counter, SLOTS["outbox" if "outbox" in parts else "pipeline"])
    worker = Worker(settings, engine, storing, parts, wake_sender, report)
    warm_up(settings, parts)
    worker.start()
    threading.Thread(target=listen, args=(reading, worker.wake), name="wake", daemon=True).start()
    report(("ready", parts))
    stop.wait()
    worker.stop()
    engine.dispose()
