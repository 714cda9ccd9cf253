"""How `gateway ingest` ends: its exit status says whether the message is stored, and
nothing else can change it.

An MTA's pipe(8) keeps a message and tries again on exit status 75 (EX_TEMPFAIL), takes 0
as delivered, and bounces the message for good on most other statuses. It reads only the
first few KiB of the command's output, then closes the pipe. So the status comes from one
fact, whether the messages are committed, and `run` guards it from everything else:

- the work runs in a worker thread while the main thread waits, so that a signal (TERM,
  HUP, INT, PIPE) is answered at once even while the database blocks in C code; the
  process then ends on the spot with the status so far: 75 before the commit, and the
  uncommitted transaction dies with the connection; 0 after it (`serve` processes what
  `ingest` could not);
- any exception of the work becomes a log entry (with its traceback) and one short line;
- nothing is written until the work is over, then one line at most, and a write that
  fails is ignored;
- `leave` points standard output and error at /dev/null before exiting, so that the
  interpreter's last flush (which turns a failure into status 120) cannot fail.

A signal that lands between the commit and the moment the work says so gives 75: the MTA
then delivers the message again, and intake stores the copy as a duplicate that the
pipeline ignores. Nothing is lost either way.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

log = logging.getLogger(__name__)

EX_OK = 0
EX_TEMPFAIL = 75
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGPIPE)
LINE_BYTES = 199   # with its newline, a line stays under 200 bytes
REASON_BYTES = 100


@dataclass
class Delivery:
    """A delivery in progress: the exit status so far (75 until `stored`), the one line for
    standard error, and a summary for standard output (an operator's replay)."""
    status: int = EX_TEMPFAIL
    line: str = ""
    summary: str = ""

    def stored(self) -> None:
        """Every message is committed: from now on the delivery exits 0."""
        self.status = EX_OK


def reason(exc: BaseException) -> str:
    """The first line of what went wrong, in the database's own words when it speaks
    (SQLAlchemy wraps the driver's error with the SQL): no traceback, no statement."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return _clip(lines[0].strip() if lines else type(inner).__name__, REASON_BYTES)


def not_stored(exc: BaseException) -> str:
    """The line an MTA shows for a message that could not be stored."""
    return f"gateway: could not store the message ({reason(exc)}); the MTA will retry"


def run(work: Callable[[Delivery], None]) -> int:
    """Run `work(delivery)` and return the exit status it came to; never raises.

    The work marks the delivery stored once the messages are committed and may set its
    line and summary; an exception it raises is logged and told in one line. A signal ends
    the process before this returns (see the module's docstring).
    """
    delivery = Delivery()
    finished = threading.Event()

    def worker() -> None:
        try:
            work(delivery)
        except BaseException as exc:  # noqa: BLE001 - the status must stand, whatever failed
            _tell(delivery, exc)
        finally:
            finished.set()

    with _signals_end_the_process(delivery, finished):
        threading.Thread(target=worker, name="ingest", daemon=True).start()
        finished.wait()
        _ignore_sigpipe()  # the work is over: a closed pipe is now only a write that fails
        _write(sys.stdout, delivery.summary)
        _write(sys.stderr, delivery.line)
    return delivery.status


def _tell(delivery: Delivery, exc: BaseException) -> None:
    """Put `exc` on the delivery's line and its traceback in the log."""
    if delivery.status == EX_OK:
        delivery.line = f"gateway: message stored, processing deferred ({reason(exc)})"
        what = "stored, then failed; `serve` processes what is left"
    else:
        delivery.line = not_stored(exc)
        what = "could not store the message"
    # A log that fails must not reach standard error through the thread's excepthook.
    with contextlib.suppress(Exception):
        log.error(what, exc_info=exc)


def leave(status: int) -> NoReturn:
    """Exit with `status`. Standard output and error, when they are this process's own
    descriptors 1 and 2, are flushed and then pointed at /dev/null: whatever is written
    after this (and the interpreter's last flush) can no longer fail and change the status.

    In a process of its own (both are), it ends there, logs flushed, without the
    interpreter's clean-up: freeing every object of a backlog's run took about 0.1 s, for a
    process whose work is done and whose database connections are closed (the caller
    closes them first)."""
    own = 0
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a real file: a test runner's
            continue
        if fd in (1, 2):
            _to_devnull(fd)
            own += 1
    if own == 2:
        logging.shutdown()
        os._exit(status)
    raise SystemExit(status)


def _clip(text: str, limit: int) -> str:
    """`text` cut to `limit` bytes of UTF-8, marked with "..." when cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit - 3].decode("utf-8", "ignore") + "..."


def _to_devnull(fd: int) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def _write(stream: object, line: str) -> None:
    """Write one line and flush; a closed, broken or missing stream is ignored."""
    if not line:
        return
    try:
        stream.write(_clip(line.replace("\n", " "), LINE_BYTES) + "\n")  # type: ignore[attr-defined]
        stream.flush()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        pass


def _ignore_sigpipe() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)


@contextmanager
def _signals_end_the_process(delivery: Delivery, finished: threading.Event) -> Iterator[None]:
    """While the block runs, a signal of SIGNALS ends the process at once with the status so
    far, saying so when it stops the work before the commit; the handlers before are put
    back afterwards."""
    def end(signum: int, _frame: FrameType | None) -> None:
        _ignore_sigpipe()  # the line below may meet a closed pipe: no second call
        if delivery.status != EX_OK and not finished.is_set():
            name = signal.Signals(signum).name
            line = f"gateway: interrupted by {name} before the message was stored; the MTA will retry\n"
            # Straight to the descriptor: the worker may hold sys.stderr's lock.
            with contextlib.suppress(OSError):
                os.write(2, line.encode())
        os._exit(delivery.status)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; it then answers signals as before
        return
    previous = {signum: signal.signal(signum, end) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
