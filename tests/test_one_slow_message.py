"""One expensive message never delays the others: the pipeline parses a message with no lock
held, then claims and decides it in a short write transaction, so the doors go on storing
meanwhile (on SQLite, the write lock is the database's). And the claim keeps its meaning:
two gateways processing the same message at once process it once."""
from __future__ import annotations

import gc
import threading
import time

from harness import CLAIRE, SUPPORT, mail
from sqlalchemy import func, select

from gateway import intake
from gateway.db import session_scope
from gateway.models import Delivery, InboundMessage
from gateway.pipeline import run
from gateway.pipeline.parse import parse

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"


def slow_to_parse() -> bytes:
    """A message that takes a while to parse, yet little to decide (a refusal: no fields)."""
    body = ("--b\r\nContent-Type: text/plain\r\n\r\n" + "a\r\n" * 80) * 5_000 + "--b--\r\n"
    return (f"From: {CLAIRE}\r\nTo: {SUPPORT}\r\nSubject: Un journal\r\nMessage-ID: <slow@x.example>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{body}").encode()


def test_the_doors_store_while_a_slow_message_is_parsed(loaded, settings) -> None:
    raw = slow_to_parse()
    started = time.perf_counter()
    parse(raw)
    parse_seconds = time.perf_counter() - started
    slow = intake.store(loaded, raw, "smtp", CLAIRE, [SUPPORT]).id
    worker = threading.Thread(target=run.process, args=(loaded, settings, slow))
    latencies = []
    gc.disable()  # a collection of the whole test run's heap would pause both threads alike
    try:
        worker.start()
        n = 0
        while worker.is_alive():
            n += 1
            started = time.perf_counter()
            intake.store(loaded, mail(CLAIRE, f"{OPEN} {n}").as_bytes(), "smtp", CLAIRE, [SUPPORT])
            latencies.append(time.perf_counter() - started)
        worker.join()
    finally:
        gc.enable()
    assert parse_seconds > 0.2 and latencies, "the message must take a while to parse"
    assert max(latencies) < parse_seconds / 2, (max(latencies), parse_seconds)
    with session_scope(loaded) as session:
        assert session.get(InboundMessage, slow).outcome == "refused"


def test_two_gateways_process_one_message_once(loaded, settings) -> None:
    stored = intake.store(loaded, mail(CLAIRE, OPEN).as_bytes(), "smtp", CLAIRE, [SUPPORT]).id
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(run.process(loaded, settings, stored)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r is None for r in results) == [False, True, True, True]
    with session_scope(loaded) as session:
        acks = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.recipient == CLAIRE))
        attempts = session.get(InboundMessage, stored).attempts
    assert (acks, attempts) == (1, 1)


def test_a_batch_reads_ahead_and_decides_each_message_once(loaded, settings) -> None:
    raws = [mail(CLAIRE, f"{OPEN} {i}").as_bytes() for i in range(5)]
    ids = [s.id for s in intake.store_many(loaded, raws, "pipe")]
    run.process(loaded, settings, ids[2])  # processed first by someone else
    outcomes = run.process_many(loaded, settings, ids)
    assert [o is None for o in outcomes] == [False, False, True, False, False]
    assert {o.outcome for o in outcomes if o is not None} == {"created"}


def test_two_gateways_with_overlapping_batches_decide_each_message_once(loaded, settings) -> None:
    raws = [mail(CLAIRE, f"{OPEN} {i}").as_bytes() for i in range(12)]
    ids = [s.id for s in intake.store_many(loaded, raws, "pipe")]
    batches = [ids[:8], ids[4:], ids[::-1]]  # the last one in the other order
    results: dict[int, list[object]] = {}
    threads = [threading.Thread(target=lambda n=n, b=b: results.update({n: run.process_many(loaded, settings, b)}))
               for n, b in enumerate(batches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    decided = sorted(i for n, batch in enumerate(batches) for i, o in zip(batch, results[n], strict=True)
                     if o is not None)
    assert decided == ids
    with session_scope(loaded) as session:
        acks = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.recipient == CLAIRE))
        attempts = set(session.scalars(select(InboundMessage.attempts).where(InboundMessage.id.in_(ids))))
    assert (acks, attempts) == (12, {1})
