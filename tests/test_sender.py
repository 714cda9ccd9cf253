"""The sender never sends what it no longer holds, over real sockets: a batch slower than its
claim loses the deliveries another sender took, its late updates change nothing, and a
drain goes through one relay connection, opened again when the relay drops it.

The relay stand-ins here hold a chosen message until the test lets it go (a slow relay),
count their connections, or drop the connection after each message."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness import CLAIRE, GREGOIRE, MATHILDE, PAUL, Relay
from sqlalchemy import select
from test_outbox import deliveries, open_case, via

from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.models import Delivery
from gateway.outbound import send

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"


class CountingRelay(Relay):
    """A relay stand-in that counts the connections that said EHLO."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.connections = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.changed:
            self.connections += 1
        return responses


class SlowRelay(CountingRelay):
    """Holds the `nth` message it is given (before answering its DATA) until `gate` is set."""

    def __init__(self, port: int, nth: int) -> None:
        super().__init__(port)
        self.nth, self.seen = nth, 0
        self.entered, self.gate = threading.Event(), threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.seen += 1
        if self.seen == self.nth:
            self.entered.set()
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 20)
        return await super().handle_DATA(server, session, envelope)


class DroppingRelay(CountingRelay):
    """Closes the connection right after accepting each message, as a relay with a short
    idle timeout, or one that restarts, does."""

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        # Runs once the answer is written: the client reads "250", then the end of the stream.
        asyncio.get_running_loop().call_soon(server.transport.close)
        return answer


@pytest.fixture
def start(free_port: Callable[[], int]) -> Iterator[Callable[..., Any]]:
    """`start(RelayClass, *args)`: a started relay stand-in on a free port, stopped after the test."""
    started: list[Relay] = []

    def make(kind: type[Relay], *args: Any) -> Any:
        relay = kind(free_port(), *args)
        relay.controller.start()
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.controller.stop()


def lock_of(engine, delivery_id: int) -> dt.datetime:
    with session_scope(engine) as session:
        return session.scalar(select(Delivery.locked_until).where(Delivery.id == delivery_id))


def copies(*relays: Relay) -> list[tuple[str, str]]:
    """(recipient, Message-ID) of everything the relays accepted."""
    return [(r.rcpt, str(r.message["Message-ID"])) for relay in relays for r in relay.received]


def in_background(work: Callable[[], dict[str, int]]) -> tuple[threading.Thread, list[dict[str, int]]]:
    results: list[dict[str, int]] = []
    thread = threading.Thread(target=lambda: results.append(work()))
    thread.start()
    return thread, results


def test_a_batch_whose_claim_expires_midway_sends_nothing_twice(loaded, settings: Settings, start) -> None:
    slow, fast = start(SlowRelay, 2), start(CountingRelay)
    open_case(loaded, settings, utcnow(), OPEN, cc=[PAUL])
    ids = [row.id for row in deliveries(loaded)]
    assert len(ids) == 4

    # The first sender (on the real clock) claims the four and hangs on the second one.
    first, results = in_background(lambda: send.drain(loaded, via(settings, slow.controller.port)))
    try:
        assert slow.entered.wait(20)
        # A second sender whose clock is just past the first one's claim, as if that batch
        # had already taken five minutes: the third and fourth are free again, the second
        # (renewed just before it was sent) is not.
        expired = lock_of(loaded, ids[3]) + dt.timedelta(microseconds=1)
        second = send.drain(loaded, via(settings, fast.controller.port), now=expired)
    finally:
        slow.gate.set()
        first.join(30)
    assert second == {"sent": 2}
    assert results == [{"sent": 2, "skipped": 2}]
    sent = copies(slow, fast)
    assert len(sent) == 4 and len(set(sent)) == 4, sent
    assert sorted(r for r, _ in sent) == sorted([CLAIRE, PAUL, MATHILDE, GREGOIRE])
    assert {(row.status, row.attempts) for row in deliveries(loaded)} == {("sent", 1)}


def test_the_final_update_of_a_stale_sender_changes_nothing(loaded, settings: Settings, start) -> None:
    slow, fast = start(SlowRelay, 1), start(CountingRelay)
    open_case(loaded, settings, utcnow(), OPEN, cc=[PAUL])
    rows = deliveries(loaded)
    fast.refuse = lambda rcpt: "451 4.3.0 try later" if rcpt.lower() == rows[0].recipient else None

    first, results = in_background(lambda: send.drain(loaded, via(settings, slow.controller.port)))
    try:
        assert slow.entered.wait(20)
        # This time the first delivery itself outlives its lock: the second sender takes it
        # too, and the relay asks it to try later.
        expired = lock_of(loaded, rows[0].id) + dt.timedelta(microseconds=1)
        second = send.drain(loaded, via(settings, fast.controller.port), now=expired)
        assert second == {"pending": 1, "sent": 3}
        theirs = deliveries(loaded)
    finally:
        slow.gate.set()
        first.join(30)
    assert results == [{"skipped": 4}]  # its late result is not recorded, and it sends nothing more
    assert deliveries(loaded) == theirs
    assert theirs[0].status == "pending" and theirs[0].attempts == 1 and "451" in theirs[0].last_error
    assert theirs[0].next_attempt_at == expired + dt.timedelta(minutes=1)
    assert len(slow.received) == 1 and len(fast.received) == 3


def test_a_drain_goes_through_one_connection_and_a_refusal_affects_no_other(
        loaded, settings: Settings, start) -> None:
    relay = start(CountingRelay)
    relay.refuse = lambda rcpt: {PAUL: "550 5.1.1 no such user", MATHILDE: "451 4.3.0 try later"}.get(rcpt.lower())
    t0 = utcnow()
    # 52 deliveries: more than one claim (50); thirteen openings in a row, not capped as a flood.
    settings = dataclasses.replace(settings, support=dataclasses.replace(settings.support, notices_per_window=100))
    for i in range(13):
        open_case(loaded, settings, t0, f"{OPEN} {i}", cc=[PAUL])
    assert send.drain(loaded, via(settings, relay.controller.port), now=t0) == {"sent": 26, "failed": 13, "pending": 13}
    assert relay.connections == 1
    sent = copies(relay)
    assert len(sent) == 26 == len(set(sent)) and {r for r, _ in sent} == {CLAIRE, GREGOIRE}


def test_a_connection_the_relay_drops_is_opened_again(loaded, settings: Settings, start) -> None:
    relay = start(DroppingRelay)
    t0 = utcnow()
    open_case(loaded, settings, t0, OPEN, cc=[PAUL])
    assert send.drain(loaded, via(settings, relay.controller.port), now=t0) == {"sent": 4}
    assert relay.connections == 4
    sent = copies(relay)
    assert len(sent) == 4 == len(set(sent))

