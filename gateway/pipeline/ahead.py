"""Reading ahead, in a process beside the writer: while a backlog's writer stores and
decides one batch of files, the next batches are read, keyed and parsed on the machine's
other processor.

Reading a file, hashing it for its keys (see `keys`) and parsing it (see parse/) need no
database and cost about a third of a message's work. `Reader` hands the backlog's file
names, a batch at a time, to a reading process (`parsing`, a fresh interpreter that imports
the parser and the keys only) and gives each batch back, in order, when the writer asks
for it. The process only reads: storing, claiming and deciding stay with the writer, so a
message is stored and decided exactly as without it. Whatever goes wrong beside the writer
(a file it could not read, a parse that raises, a process that dies or cannot start) makes
the writer read and parse those messages itself, as without it: a file that cannot be read
raises there, a message whose parsing raises is held with its own exception and traceback.

A backlog of one batch is read by the writer alone: the process costs an interpreter. It
starts when asked (as early as the command can: it imports nothing of the database, and
this module neither), stops on leaving the `with` block, and ends by itself when its input
closes, should the writer die.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import IO

from gateway.keys import keys_of
from gateway.pipeline import parsing
from gateway.pipeline.parsing import Item

log = logging.getLogger(__name__)
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the `gateway` package
_Answer = Future[list[Item | None]]

BATCH = 50  # messages stored, then decided, per transaction when replaying a folder
AHEAD = 2  # batches read ahead of the one being stored (a busy machine may slow the reader)
# At most this much of files read ahead, one batch at least: the bound of a decided group
# (`reading.BATCH_BYTES`), not imported from there since `reading` loads the database.
AHEAD_BYTES = 32 * 1024 * 1024


class Reader:
    """A backlog's files (`files`, in order) a batch at a time: `for batch in reader` gives
    each batch's `Item`s, read beside the writer once `start` ran, else by the writer."""

    def __init__(self, files: list[str], batch: int = BATCH) -> None:
        self._batches = [files[start:start + batch] for start in range(0, len(files), batch)]
        self._bytes: dict[int, int] = {}  # a batch's size on disk, once asked
        self._process: subprocess.Popen[bytes] | None = None
        self._requests: queue.SimpleQueue[tuple[list[str], _Answer] | None] = queue.SimpleQueue()
        self._courier: threading.Thread | None = None
        self._ahead: deque[tuple[int, _Answer]] = deque()  # batches asked for, not yet taken

    def start(self) -> None:
        """Start the reading process for a backlog of more than one batch (a no-op once
        started, or where it cannot start)."""
        if self._process is not None or len(self._batches) < 2 or not sys.executable:
            return
        path = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-c", "from gateway.pipeline.parsing import main; main()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONPATH=path))
        except OSError:
            log.warning("no reading process beside the writer; reading in the writer", exc_info=True)
            return
        self._courier = threading.Thread(target=self._carry, name="reader-courier", daemon=True)
        self._courier.start()
        self._ask(0)

    def __iter__(self) -> Iterator[list[Item]]:
        for index, labels in enumerate(self._batches):
            self._ask(index)
            answer = self._ahead.popleft()[1] if self._ahead and self._ahead[0][0] == index else None
            yield _items(labels, answer)

    def _ask(self, index: int) -> None:
        """Have batches `index` and the next AHEAD read beside, within AHEAD_BYTES."""
        if self._process is None:
            return
        asked = self._ahead[-1][0] if self._ahead else index - 1
        held = sum(self._size(n) for n, _ in self._ahead)
        for n in range(max(asked + 1, index), min(index + 1 + AHEAD, len(self._batches))):
            size = self._size(n)
            if self._ahead and held + size > AHEAD_BYTES:
                return  # the writer reads the next ones itself, or asks again later
            answer: _Answer = Future()
            self._requests.put((self._batches[n], answer))
            self._ahead.append((n, answer))
            held += size

    def _size(self, index: int) -> int:
        if index not in self._bytes:
            self._bytes[index] = sum(_file_size(label) for label in self._batches[index])
        return self._bytes[index]

    def _carry(self) -> None:
        """The courier's thread: each request to the process, its answer back, in order."""
        assert self._process is not None and self._process.stdin and self._process.stdout
        requests, answers = self._process.stdin, self._process.stdout
        while (request := self._requests.get()) is not None:
            labels, answer = request
            try:
                answer.set_result(_exchange(requests, answers, labels))
            except Exception as exc:  # noqa: BLE001 - the writer reads them itself
                answer.set_exception(exc)

    def close(self) -> None:
        """Stop the process (nothing it still reads is wanted) and the courier."""
        self._ahead.clear()
        self._requests.put(None)
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        if self._courier is not None:
            self._courier.join()  # what it was carrying failed with the process
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # what is still buffered has nowhere to go
                    stream.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def _items(labels: list[str], answer: _Answer | None) -> list[Item]:
    """The batch's items: as read beside, and by the writer where that failed."""
    beside: list[Item | None] = [None] * len(labels)
    if answer is not None:
        try:
            beside = answer.result()
        except Exception:  # the process failed: read here
            log.warning("the reading process failed; reading in the writer", exc_info=True)
    return [item if item is not None else _read_here(label) for label, item in zip(labels, beside, strict=True)]


def _read_here(label: str) -> Item:
    """The file read and keyed by the writer (which parses it when it decides); raises
    OSError when it cannot be read."""
    raw = Path(label).read_bytes()
    return Item(label, raw, keys_of(raw))


def _file_size(label: str) -> int:
    try:
        return os.stat(label).st_size
    except OSError:
        return 0


def _exchange(requests: IO[bytes], answers: IO[bytes], labels: list[str]) -> list[Item | None]:
    parsing.write_frame(requests, labels)
    items: list[Item | None] = parsing.read_frame(answers)
    if len(items) != len(labels) or any(i is not None and i.label != label
                                        for i, label in zip(items, labels, strict=True)):
        raise ValueError(f"{len(items)} files read of {len(labels)}, or in another order")
    return items
