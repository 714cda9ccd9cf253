"""Work done in a forked child, so that what it loads never stays in this process.

Some libraries cost far more memory than the answer they give: Alembic and Mako for a
schema upgrade (about 7 MB), the holidays library for one country's public holidays (it
loads every country's rules, about 17 MB). `serve` runs for months and forks its workers
from its own pages: what it loaded once, each of them carries. `call` runs such work in a
child forked for it and returns its result (pickled back through a pipe), or raises
`Unavailable` when the child could not be used; the caller then does the work itself.
"""
from __future__ import annotations

import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any


class Unavailable(Exception):
    """No child: this process runs other threads (a fork could copy a lock one of them
    holds), the library is loaded here already (nothing to keep out), or the child failed."""


def call(work: Callable[..., Any], *args: Any, keeps_out: str) -> Any:
    """`work(*args)` in a forked child that leaves by `os._exit`; what it returned, or the
    exception it raised (which must pickle). `keeps_out`: the module the child spares us."""
    if threading.active_count() > 1 or keeps_out in sys.modules:
        raise Unavailable(keeps_out)
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves by os._exit
        code = 1
        try:
            os.close(reading)
            try:
                answer: tuple[bool, Any] = (True, work(*args))
            except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
                answer = (False, exc)
            with os.fdopen(writing, "wb") as out:
                pickle.dump(answer, out)
            code = 0
        finally:
            os._exit(code)
    os.close(writing)
    with os.fdopen(reading, "rb") as source:
        data = source.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not data:
        raise Unavailable(f"the child for {keeps_out} failed")
    done, value = pickle.loads(data)
    if not done:
        raise value
    return value
