"""Group commit for the SMTP door: the messages whose DATA ended while the door stored the
group before, or during one turn of its event loop, are stored together in one
transaction, and each session is answered only once the commit that holds its message is
done.

Each message is hashed (its keys, gateway/keys.py) as its DATA ends, while the group
before is stored or the line is awaited, not once the group holds the line. A group is
stored by one thread beside the loop, which serves the other sessions meanwhile. On
SQLite the loop first takes the door's place in the writers' line without waiting
(`db.try_line`): while another process writes (the pipeline lets the door in after its
current message, the sender before its next transaction, see `Storing` in
gateway/worker.py), it asks again every half millisecond and keeps serving the other
sessions; then it lends the line to the store thread (`db.lent_line`). That thread lets go
of the interpreter in each SQLite step and commit; the serving process takes it back from
a busy loop within half a millisecond (`sys.setswitchinterval`, receive/smtp.py), not the
default 5 ms. Stored in the loop's own thread (until 1 December 2026), a group of fifty
stopped every session for 5 to 15 ms. On PostgreSQL a group's time is mostly the server's
(round trips, the commit's flush to disk). When a group's transaction fails (a concurrent
store of the same message, a database error), each of its messages is stored again on its
own, so a failure is that message's alone.

A new transaction waits at `MAIL FROM` (`room`) while a message received is not committed
yet, `ROOM_SECONDS` at most: under load the loop then spends its turns on the messages it
holds (their DATA, their answers) rather than on new ones, and a sender that gives up
waiting has sent nothing yet (after its data, it would send the message again). Under the
benchmark's load (50 clients) the end of DATA → 250 p99 fell by about a tenth
(bench/README.md, row 15); after `ROOM_SECONDS` (another process keeping the writers'
line), a transaction goes on as before and its message waits for the line after its data.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine

from gateway import db, heap, intake
from gateway.keys import Keys, keys_of
from gateway.worker import Storing

log = logging.getLogger(__name__)
GROUP = 64      # messages at most in one transaction
LINE_POLL = 0.0005  # seconds between two tries for the writers' line
ROOM_SECONDS = 10.0  # a new transaction waits at most this long at MAIL FROM


@dataclass(frozen=True)
class _Waiting:
    item: intake.Incoming
    keys: Keys
    future: asyncio.Future[intake.Stored]


class GroupWriter:
    """`submit(item)`, in the door's event loop, returns a future set once the item is
    committed (or failed)."""

    def __init__(self, engine: Engine, storing: Storing) -> None:
        self.engine, self.storing = engine, storing
        self.waiting: list[_Waiting] = []
        self.unsettled = 0  # messages submitted, not committed (or failed) yet
        self.settled: asyncio.Event | None = None  # set when `unsettled` falls to 0
        self.storer: asyncio.Task[None] | None = None
        self.sqlite = engine.dialect.name == "sqlite"
        self.beside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smtp-store")

    def submit(self, item: intake.Incoming) -> asyncio.Future[intake.Stored]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[intake.Stored] = loop.create_future()
        # Hashed now, as its DATA ends: not while the group holds the writers' line.
        self.waiting.append(_Waiting(item, keys_of(item.raw), future))
        self.unsettled += 1
        if self.storer is None:  # it starts once this turn's sessions had theirs
            self.storer = loop.create_task(self._store_waiting())
        return future

    async def room(self) -> None:
        """Return once every message submitted before is committed or failed, or after
        `ROOM_SECONDS`; at once when none waits. Each waiter goes on when the count first
        falls to zero, whatever was submitted since: none waits for ever."""
        if not self.unsettled:
            return
        if self.settled is None:
            self.settled = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ROOM_SECONDS):
                await self.settled.wait()

    def _done(self, count: int) -> None:
        self.unsettled -= count
        if not self.unsettled and self.settled is not None:
            self.settled.set()
            self.settled = None

    def close(self) -> None:
        """Store what waits (the loop has stopped: nobody is answered)."""
        self.beside.shutdown()
        while self.waiting:
            with self.storing.one():
                self._store(self._next())

    def _next(self) -> list[_Waiting]:
        group, self.waiting = self.waiting[:GROUP], self.waiting[GROUP:]
        return group

    async def _store_waiting(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while self.waiting:
                group: list[_Waiting] = []
                try:
                    with self.storing.one():
                        if not self.sqlite:
                            group = self._next()
                            stored = await loop.run_in_executor(self.beside, self._store, group)
                        else:
                            while (line := db.try_line(self.engine)) is None:
                                await asyncio.sleep(LINE_POLL)
                            with line:  # the loop holds the line; the store thread writes in it
                                group = self._next()
                                stored = await loop.run_in_executor(self.beside, self._store_in_line, group)
                    for w, outcome in zip(group, stored, strict=True):
                        _settle(w.future, outcome)
                finally:
                    self._done(len(group))
                if sum(len(w.item.raw) for w in group) >= heap.BIG:
                    # SQLite's cached statements keep the values last bound to them (a copy
                    # of the message) until run again: new connections, and the heap trimmed.
                    del group
                    self.engine.dispose()
                    heap.trim()
        finally:
            self.storer = None

    def _store_in_line(self, group: list[_Waiting]) -> list[intake.Stored | Exception]:
        with db.lent_line():
            return self._store(group)

    def _store(self, group: list[_Waiting]) -> list[intake.Stored | Exception]:
        """Each message's row, or what kept it from being stored."""
        if len(group) > 1:
            try:
                return list(intake.store_group(self.engine, [w.item for w in group], [w.keys for w in group]))
            except Exception:  # noqa: BLE001 - each message is stored again on its own below
                log.info("a group of %d messages failed to store; storing each alone", len(group))
        return [self._store_one(w.item, w.keys) for w in group]

    def _store_one(self, item: intake.Incoming, keys: Keys) -> intake.Stored | Exception:
        try:
            return intake.store(self.engine, item.raw, door=item.door, envelope_from=item.envelope_from,
                                envelope_to=item.envelope_to, keys=keys)
        except Exception as exc:  # noqa: BLE001 - the session answers 451
            return exc


def _settle(future: asyncio.Future[intake.Stored], outcome: intake.Stored | Exception) -> None:
    """Answer the session waiting on `future`, unless it is gone (cut, or its loop closed)."""
    if future.done() or future.get_loop().is_closed():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
