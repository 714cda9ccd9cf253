"""Run a job: find what is due, then act on each thing in its own short transaction, or,
for a job that can (`Job.act_many`: the reminders), on a batch of things in one short
transaction (`Pace`); a batch that fails is done again one thing at a time.

This is the one place where a job's unexpected exception is caught: the thing it was
doing is left for the next run, the others go on, and the run is recorded as failed with
its errors (`gateway status`). A unique-key violation means another gateway did that
thing at the same moment: it is skipped. The caller passes the job's clock; the runner
reads the real time for each transaction (clock.Clock says which time dates what).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.jobs import NAMES, autoclose, digest, escalation, expiry, expiry_notice, record, reminders
from gateway.jobs.clock import Clock
from gateway.jobs.common import Item, Job

log = logging.getLogger(__name__)

JOBS: dict[str, Job] = {job.name: job for job in (
    expiry.JOB, expiry_notice.JOB, escalation.JOB, reminders.JOB, autoclose.JOB, digest.JOB)}
assert tuple(JOBS) == NAMES


@dataclass(frozen=True)
class Run:
    """What one run of a job did: counts by action, and the errors it left for later."""
    name: str
    now: dt.datetime
    did: dict[str, int]
    errors: tuple[str, ...] = ()

    def summary(self) -> str:
        done = ", ".join(f"{action}: {n}" for action, n in sorted(self.did.items())) or "nothing due"
        return f"{self.name}: {done}" + (f"; {len(self.errors)} error(s): {self.errors[0]}" if self.errors else "")


def run(name: str, settings: Settings, engine: Engine, now: dt.datetime,
        stopping: Callable[[], bool] = lambda: False) -> Run:
    """Run the job `name` once with the job's clock `now` (naive UTC): what is due then is
    done now, its mail due at once. When `stopping()` turns true (the gateway stops), what
    is left is left for the next run."""
    job = JOBS[name]
    record.save(engine, name, last_run=record.iso(now), outcome="running")
    did: Counter[str] = Counter()
    errors: list[str] = []
    try:
        with session_scope(engine) as session:
            items = job.find(settings, session, now)
    except Exception as exc:
        log.exception("job %s could not look for work", name)
        items, errors = [], [f"find: {type(exc).__name__}: {exc}"[:500]]
    stopped = False
    pace = Pace(engine.dialect.name) if job.act_many is not None else None
    while items and not (stopped := stopping()):
        batch, items = (items[:pace.size], items[pace.size:]) if pace else (items[:1], items[1:])
        started = time.monotonic()
        if len(batch) == 1 or not _act_many(job, settings, engine, now, batch, did):
            for item in batch:
                _act(job, settings, engine, now, item, did, errors)
        if pace:
            pace.took(len(batch), time.monotonic() - started)
    result = Run(name, now, dict(did), tuple(errors))
    outcome = "failed" if errors else "stopped" if stopped else "ok"
    fields: dict[str, Any] = {"outcome": outcome, "did": result.did, "errors": list(errors[:5])}
    if outcome == "ok":
        fields["last_ok"] = record.iso(now)
    record.save(engine, name, **fields)
    return result


class Pace:
    """How many things a job that acts on many at once takes in one transaction: as many
    as fit in about `SECONDS[dialect]` at the pace of the last transaction, between `LEAST`
    and `MOST`. SQLite's write lock holds every other writer (the doors) meanwhile;
    PostgreSQL's row locks only the batch's cases, and each statement saved is a round trip."""
    FIRST, LEAST, MOST = 20, 10, 500
    SECONDS = {"sqlite": 0.1}
    OTHERWISE = 0.5

    def __init__(self, dialect: str) -> None:
        self.size, self.seconds = self.FIRST, self.SECONDS.get(dialect, self.OTHERWISE)

    def took(self, size: int, seconds: float) -> None:
        fits = int(size * self.seconds / max(seconds, 1e-3))
        self.size = max(min(self.LEAST, self.MOST), min(self.MOST, 2 * size, fits))


def _act_many(job: Job, settings: Settings, engine: Engine, now: dt.datetime, batch: list[Item],
              did: Counter[str]) -> bool:
    """Act on `batch` in one transaction; False when it failed as a whole (nothing of it
    was committed: the caller does each thing on its own, so that one thing's trouble
    stays its own and a thing another gateway did is skipped alone)."""
    assert job.act_many is not None
    try:
        with session_scope(engine) as session:
            done = job.act_many(settings, session, Clock(now, utcnow()), [item.key for item in batch])
    except IntegrityError as exc:  # another gateway did some of it at the same moment
        log.info("job %s: a batch of %d done one by one (%s)", job.name, len(batch), str(exc.orig)[:200])
        return False
    except Exception:
        log.exception("job %s: a batch of %d failed, done one by one", job.name, len(batch))
        return False
    did.update(done.get(item.key) or "skipped" for item in batch)
    return True


def _act(job: Job, settings: Settings, engine: Engine, now: dt.datetime, item: Item, did: Counter[str],
         errors: list[str]) -> None:
    """Act on one thing in a transaction of its own."""
    try:
        with session_scope(engine) as session:
            done = job.act(settings, session, Clock(now, utcnow()), item.key)
    except IntegrityError as exc:
        # Another gateway did it at the same moment (logged: a bug would show here too).
        log.info("job %s: %s %s done elsewhere (%s)", job.name, item.action, item.key, str(exc.orig)[:200])
        done = None
    except Exception as exc:
        log.exception("job %s failed on %s %s", job.name, item.action, item.key)
        errors.append(f"{item.action} {item.key}: {type(exc).__name__}: {exc}"[:500])
        return
    did[done or "skipped"] += 1


def run_all(settings: Settings, engine: Engine, now: dt.datetime) -> list[Run]:
    return [run(name, settings, engine, now) for name in NAMES]


def forecast(name: str, settings: Settings, session: Session, at: dt.datetime) -> dict[str, int]:
    """What the job would do if it ran at `at`, as counts by action (reads only)."""
    return dict(Counter(item.action for item in JOBS[name].find(settings, session, at)))
