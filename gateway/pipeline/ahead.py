"""Parsing ahead, in a process beside the writer: while a backlog's writer decides one
batch, the next batch is read and parsed on the machine's other processor.

Parsing (see parse/) needs no database and costs about a fifth of a message's work.
`Parser` reads the next batch's raw messages (holding no lock, as `reading.read` does),
hands them to a parsing process (`parsing`, a fresh interpreter that imports the parser
only) and gives them back parsed when the writer asks for that batch. The parsing process
only parses: storing, claiming and deciding stay with the writer, so a message is decided
exactly as without it. Whatever goes wrong beside the writer (a parse that raises, a
process that dies or cannot start, a batch it could not read ahead) makes the writer read
and parse those messages itself, as without it: a message whose parsing raises is held
with its own exception and traceback.

The process costs an interpreter while the backlog lasts (started when asked, stopped on
leaving the `with` block); it ends by itself when its input closes, should the writer die.
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
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import IO

from sqlalchemy import Engine

from gateway.pipeline import parsing
from gateway.pipeline.parse import ParsedMail
from gateway.pipeline.reading import BATCH_BYTES, Fetched, Read, fetch, groups, parsed_read, read

log = logging.getLogger(__name__)
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the `gateway` package
_Answer = Future[list[ParsedMail | None]]


class Parser:
    """Reads and parses a backlog's next batch beside the writer. Until `start`, and for
    any batch it was not asked to read ahead, `read` is `reading.read`."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._requests: queue.SimpleQueue[tuple[list[bytes], _Answer] | None] = queue.SimpleQueue()
        self._courier: threading.Thread | None = None
        self._ahead: deque[tuple[list[int], list[Fetched], _Answer]] = deque()

    def start(self) -> None:
        """Start the parsing process (a no-op once started, or where it cannot start)."""
        if self._process is not None or not sys.executable:
            return
        path = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-c", "from gateway.pipeline.parsing import main; main()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONPATH=path))
        except OSError:
            log.warning("no parsing process beside the writer; parsing in the writer", exc_info=True)
            return
        self._courier = threading.Thread(target=self._carry, name="parser-courier", daemon=True)
        self._courier.start()

    def prefetch(self, engine: Engine, ids: list[int]) -> None:
        """Read the messages of `ids` (when they fit one group of `reading.groups`, and with
        what is already ahead in `BATCH_BYTES`) and have them parsed, for a later
        `read(engine, ids)`; what goes wrong is left to that `read`."""
        if self._process is None or not ids:
            return
        try:
            [group] = groups(engine, ids)
            fetched = fetch(engine, group)
        except Exception:  # read again, and met, in the writer's own turn
            log.debug("messages %s..%s not read ahead", ids[0], ids[-1], exc_info=True)
            return
        held = sum(len(f.raw) for _, batch, _ in self._ahead for f in batch)
        if self._ahead and held + sum(len(f.raw) for f in fetched) > BATCH_BYTES:
            return  # the writer reads these itself: what is ahead stays within a group's size
        answer: _Answer = Future()
        self._requests.put(([f.raw for f in fetched], answer))
        self._ahead.append((group, fetched, answer))

    def read(self, engine: Engine, ids: list[int]) -> list[Read]:
        """The messages of `ids` read and parsed, as `reading.read` gives them."""
        at = next((n for n, (group, _, _) in enumerate(self._ahead) if group == ids), None)
        if at is None:
            return read(engine, ids)
        for _ in range(at):
            self._ahead.popleft()  # read ahead for nothing: the writer went another way
        _, fetched, answer = self._ahead.popleft()
        try:
            parsed = answer.result()
        except Exception:  # the process failed: parse here
            log.warning("the parsing process failed; parsing in the writer", exc_info=True)
            parsed = [None] * len(fetched)
        return [parsed_read(f.id, f.raw, f.reused, p) for f, p in zip(fetched, parsed, strict=True)]

    def _carry(self) -> None:
        """The courier's thread: each request to the process, its answer back, in order."""
        assert self._process is not None and self._process.stdin and self._process.stdout
        requests, answers = self._process.stdin, self._process.stdout
        while (request := self._requests.get()) is not None:
            raws, answer = request
            try:
                answer.set_result(_exchange(requests, answers, raws))
            except Exception as exc:  # noqa: BLE001 - the writer parses them itself
                answer.set_exception(exc)

    def close(self) -> None:
        """Stop the process (nothing it still parses is wanted) and the courier."""
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

    def __enter__(self) -> Parser:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def _exchange(requests: IO[bytes], answers: IO[bytes], raws: list[bytes]) -> list[ParsedMail | None]:
    parsing.write_frame(requests, raws)
    parsed: list[ParsedMail | None] = parsing.read_frame(answers)
    if len(parsed) != len(raws):
        raise ValueError(f"{len(parsed)} messages parsed of {len(raws)}")
    return parsed
