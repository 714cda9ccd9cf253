"""Group commit for the SMTP door: the messages that arrive while one transaction commits
are stored together in the next one, and each session is answered only after the commit
that holds its message.

One writer thread takes every message waiting (up to `GROUP` at a time) and stores them
with `intake.store_group`; when that transaction fails (a concurrent store of the same
message, a database error), each message of the group is stored again on its own, so a
failure is that message's alone. While the writer stores, the worker gives way
(`Storing`, gateway/worker.py).
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import Engine

from gateway import heap, intake
from gateway.worker import Storing

log = logging.getLogger(__name__)
GROUP = 64      # messages at most in one transaction


@dataclass(frozen=True)
class _Waiting:
    item: intake.Incoming
    future: Future[intake.Stored]


class GroupWriter:
    """`submit(item)` returns a future set once the item is committed (or failed)."""

    def __init__(self, engine: Engine, storing: Storing) -> None:
        self.engine, self.storing = engine, storing
        self.queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="smtp-store", daemon=True)
        self.thread.start()

    def submit(self, item: intake.Incoming) -> Future[intake.Stored]:
        future: Future[intake.Stored] = Future()
        self.queue.put(_Waiting(item, future))
        return future

    def close(self) -> None:
        """Store what waits, then end the writer."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        while (group := self._next()) is not None:
            self._store(group)
            size = sum(len(w.item.raw) for w in group)
            del group  # the messages' bytes go now, not when the next message comes
            if size >= heap.BIG:
                # SQLite's cached statements keep the values last bound to them (a copy of
                # the message) until run again: new connections, and the heap trimmed.
                self.engine.dispose()
                heap.trim()

    def _next(self) -> list[_Waiting] | None:
        """The messages waiting (the first one waited for), or None once closed."""
        first = self.queue.get()
        if first is None:
            return None
        group = [first]
        while len(group) < GROUP:
            try:
                waiting = self.queue.get_nowait()
            except queue.Empty:
                break
            if waiting is None:
                self.queue.put(None)    # close() once this group is stored
                break
            group.append(waiting)
        return group

    def _store(self, group: list[_Waiting]) -> None:
        with self.storing.one():
            if len(group) > 1:
                try:
                    stored = intake.store_group(self.engine, [w.item for w in group])
                except Exception:  # noqa: BLE001 - each message is stored again on its own below
                    log.info("a group of %d messages failed to store; storing each alone", len(group))
                else:
                    for w, result in zip(group, stored, strict=True):
                        w.future.set_result(result)
                    return
            for w in group:
                self._store_one(w)

    def _store_one(self, w: _Waiting) -> None:
        try:
            w.future.set_result(intake.store(self.engine, w.item.raw, door=w.item.door,
                                             envelope_from=w.item.envelope_from, envelope_to=w.item.envelope_to))
        except Exception as exc:  # noqa: BLE001 - the session answers 451
            w.future.set_exception(exc)
