"""What a worker process of `serve` runs beside its loops (worker_process.py): the warm-up
before it says it is ready, its reports to the serving process, the wake-ups it gives the
sender and the ones it listens for.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from gateway.config import Settings
from gateway.worker import Report

log = logging.getLogger(__name__)
WARM_KINDS = ("case_opened", "case_message", "agent_new_case", "agent_message")  # compiled ahead
# ... with what they extend and import; the macros of `_common` built too (imported without context).
WARM_SHARED = ("base.html", "_common.txt", "_common.html")


def warm_up(settings: Settings, parts: tuple[str, ...]) -> None:
    """What the first messages would otherwise pay for: the pipeline's modules and the
    templates of everyday answers (a few hundred milliseconds, seconds on a busy machine);
    the scheduler's modules. The serving process does it before it forks the workers, so
    that it is done once, in pages they share; a worker then finds it done."""
    if "jobs" in parts and settings.jobs.enabled:
        from gateway import scheduler  # noqa: F401 - imported for its import's cost
    if "pipeline" not in parts:
        return
    from gateway.outbound import compose
    from gateway.pipeline import reading, run  # noqa: F401 - imported for their import's cost
    names = [kind + suffix for kind in WARM_KINDS for suffix in (".txt", ".html")] + list(WARM_SHARED)
    for lang, name in itertools.product(compose.LANGUAGES, names):
        env = compose.environment(settings.templates_dir, name.endswith(".html"))
        try:
            template = env.get_template(f"{lang}/{name}")
            if name.startswith("_"):
                template.module  # noqa: B018 - built for its cost: what `{% from … import … %}` reads
        except Exception:  # a template that fails fails on its message, as before
            log.debug("template %s/%s not compiled ahead", lang, name, exc_info=True)


def reporter(reports: Connection) -> Report:
    lock = threading.Lock()

    def report(event: tuple[Any, ...]) -> None:
        with lock, contextlib.suppress(OSError):  # the serving process is gone: nobody to tell
            reports.send(event)
    return report


def waker(wakes: Connection) -> Callable[[], None]:
    os.set_blocking(wakes.fileno(), False)

    def wake() -> None:
        with contextlib.suppress(OSError):
            os.write(wakes.fileno(), b"\0")
    return wake


def listen(reading: Connection, wake: Callable[[], None]) -> None:
    """Wake the worker for each byte; leave at once when the serving process is gone."""
    while True:
        try:
            data = os.read(reading.fileno(), 4096)
        except InterruptedError:
            continue
        if not data:
            os._exit(1)
        wake()
