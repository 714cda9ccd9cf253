"""The writers' order on SQLite (`Storing`, gateway/worker.py): the doors first, then the
sender, then the pipeline. The counters are shared memory as in `serve`; each writer runs
in a thread of its own here, as each runs in a process of its own there."""
from __future__ import annotations

import threading
import time

from gateway.worker import DOOR_FIRST, SLOTS, Storing


def writers() -> tuple[Storing, Storing, Storing]:
    shared = Storing.shared()
    return (Storing(shared.counter, SLOTS["serve"]), Storing(shared.counter, SLOTS["outbox"]),
            Storing(shared.counter, SLOTS["pipeline"]))


def door_waiting(door: Storing, seconds: float, served: list[float]) -> threading.Thread:
    """A door that waits for the line `seconds`, then stores; `served` gets when it was done."""
    entered = threading.Event()

    def run() -> None:
        with door.one():
            entered.set()
            time.sleep(seconds)
        served.append(time.monotonic())

    thread = threading.Thread(target=run)
    thread.start()
    entered.wait()
    return thread


def test_the_sender_takes_its_turn_after_a_waiting_door() -> None:
    door, sender, _pipeline = writers()
    served: list[float] = []
    thread = door_waiting(door, 0.02, served)
    with sender.turn():
        began = time.monotonic()
    thread.join()
    assert served and began >= served[0]


def test_the_pipeline_lets_the_door_in_whatever_the_sender_writes_meanwhile() -> None:
    """The sender's transactions are not the door's: the pipeline waits for the door."""
    door, sender, pipeline = writers()
    served: list[float] = []
    thread = door_waiting(door, 0.03, served)

    def sender_writes() -> None:
        time.sleep(0.005)  # once the pipeline waits
        for _ in range(3):
            with sender.one():
                pass

    threading.Thread(target=sender_writes).start()
    pipeline.let_in()
    went_on = time.monotonic()
    thread.join()
    assert served and went_on >= served[0]


def test_nobody_waits_for_a_door_longer_than_door_first() -> None:
    door, sender, pipeline = writers()
    thread = door_waiting(door, DOOR_FIRST * 8, [])
    t0 = time.monotonic()
    pipeline.let_in()
    with sender.turn():
        pass
    assert time.monotonic() - t0 < DOOR_FIRST * 6, "each waited its 50 ms at most, not for the door"
    thread.join()


def test_a_door_never_waits_for_the_others() -> None:
    door, sender, pipeline = writers()
    with sender.one(), pipeline.one():
        t0 = time.monotonic()
        with door.turn():
            pass
    assert time.monotonic() - t0 < DOOR_FIRST / 2
