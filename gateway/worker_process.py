"""The worker of `gateway serve` as a process of its own, so that the doors' interpreter
never waits for the pipeline (Python runs one thread at a time per process).

The serving process starts it (spawned: a fresh interpreter, which opens its own
database connections), wakes it by writing a byte to a pipe after each message a door
stored, and starts it again, a second later, should it die. The worker dies with the
serving process: when the pipe's writing end closes (the serving process is gone,
however it ended), the worker exits at once, as if killed with it; whatever it was
writing is rolled back and done again by the next worker. `stop()` asks it to finish
its transaction and leave (SIGTERM).
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from gateway import logs
from gateway.config import Settings
from gateway.worker import Storing

log = logging.getLogger(__name__)
RESTART_SECONDS = 1.0


class WorkerProcess:
    """Start, wake, watch and stop the worker process."""

    def __init__(self, settings: Settings, storing: Storing) -> None:
        self.settings, self.storing = settings, storing
        self.context = multiprocessing.get_context("spawn")
        self.reading, self.writing = self.context.Pipe(duplex=False)
        os.set_blocking(self.writing.fileno(), False)  # a door never waits for the worker
        self.process: Any = None
        self.stopping = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="worker-watch", daemon=True)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else int(self.process.pid)

    def start(self) -> None:
        self._spawn()
        self.watcher.start()

    def wake(self) -> None:
        """Tell the worker something is pending; never blocks (a full pipe wakes it anyway)."""
        with contextlib.suppress(OSError):  # BlockingIOError too
            os.write(self.writing.fileno(), b"\0")

    def stop(self, timeout: float = 60) -> None:
        self.stopping.set()
        process = self.process
        if process is not None and process.is_alive():
            process.terminate()
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()
        self.watcher.join(timeout=5)
        self.writing.close()
        self.reading.close()

    def _spawn(self) -> None:
        verbose = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        self.process = self.context.Process(target=main, args=(self.settings, self.reading, self.storing.counter,
                                                              verbose), name="gateway-worker", daemon=True)
        self.process.start()

    def _watch(self) -> None:
        while not self.stopping.is_set():
            self.process.join(0.5)
            if self.process.is_alive() or self.stopping.is_set():
                continue
            log.error("the worker process ended (exit status %s); starting it again", self.process.exitcode)
            if not self.stopping.wait(RESTART_SECONDS):
                self._spawn()
                self.wake()


def main(settings: Settings, reading: Connection, counter: Any, verbose: bool) -> None:
    """The worker process: run the worker until SIGTERM, or until the serving process is gone."""
    from gateway.db import make_engine
    from gateway.worker import Worker
    logs.setup(verbose)
    if settings.log.file:
        logs.to_file(settings.path(settings.log.file))
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the serving process, which stops us
    engine = make_engine(settings)
    worker = Worker(settings, engine, Storing(counter))
    worker.start()
    threading.Thread(target=_listen, args=(reading, worker.wake), name="wake", daemon=True).start()
    stop.wait()
    worker.stop()
    engine.dispose()


def _listen(reading: Connection, wake: Any) -> None:
    """Wake the pipeline for each byte; leave at once when the serving process is gone."""
    while True:
        try:
            data = os.read(reading.fileno(), 4096)
        except InterruptedError:
            continue
        if not data:
            os._exit(1)
        wake()
