"""The scheduler inside `gateway serve`: APScheduler runs each job with the wall clock.

Reminders, auto-close and escalation run at start, then every few minutes; the digest and
licence expiry run daily at a local time of day, and at start too when the gateway was
down at their last time (one run, however many days were missed). Missed runs are
coalesced into one, a job never overlaps itself, and the jobs run one at a time in a
single worker thread: a clock jump or a slow run never piles runs up. After each run the
job's record gets its next time and what it is then expected to do (`gateway status`).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from gateway import workdays
from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.jobs import record, runner
from gateway.jobs.common import zone

log = logging.getLogger(__name__)


def daily_times(settings: Settings) -> dict[str, dt.time]:
    return {"licence-expiry": dt.time.fromisoformat(settings.jobs.licence_expiry_at),
            "expiry-notice": dt.time.fromisoformat(settings.jobs.expiry_notice_at),
            "adv-digest": dt.time.fromisoformat(settings.jobs.adv_digest_at)}


def triggers(settings: Settings) -> dict[str, BaseTrigger]:
    tz, jobs = zone(settings), settings.jobs
    every = {"escalation": jobs.escalation_every_minutes, "reminders": jobs.reminders_every_minutes,
             "autoclose": jobs.reminders_every_minutes}
    out: dict[str, BaseTrigger] = {
        name: IntervalTrigger(minutes=minutes, timezone=tz) for name, minutes in every.items()}
    for name, at in daily_times(settings).items():
        out[name] = CronTrigger(hour=at.hour, minute=at.minute, timezone=tz)
    return out


def missed(at: dt.time, settings: Settings, last_ok: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a daily job's latest time before `now` passed since its last good run."""
    tz = zone(settings)
    local_now = workdays.to_local(now, tz)
    latest = dt.datetime.combine(local_now.date(), at, tzinfo=tz)
    if latest > local_now:
        latest = dt.datetime.combine(local_now.date() - dt.timedelta(days=1), at, tzinfo=tz)
    return last_ok is None or workdays.to_utc(latest) > last_ok


class Scheduler:
    """`start()` then `stop()`; the jobs themselves are in gateway/jobs/."""

    def __init__(self, settings: Settings, engine: Engine,
                 on_run: Callable[[str, str], None] = lambda _job, _outcome: None) -> None:
        self.settings, self.engine, self.on_run = settings, engine, on_run
        self.triggers = triggers(settings)
        self.stopping = threading.Event()
        # APScheduler logs every run at INFO; the gateway logs one line when a run did something.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.scheduler = BackgroundScheduler(
            timezone=zone(settings), executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})

    def start(self) -> None:
        now = utcnow()
        with session_scope(self.engine) as session:
            records = record.report(session)
        daily = daily_times(self.settings)
        for name, trigger in self.triggers.items():
            last_ok = records[name].get("last_ok")
            catch_up = name not in daily or missed(
                daily[name], self.settings, dt.datetime.fromisoformat(last_ok).replace(tzinfo=None)
                if last_ok else None, now)
            extra = {"next_run_time": workdays.to_local(now, zone(self.settings))} if catch_up else {}
            self.scheduler.add_job(self._fire, trigger, args=[name], id=name, name=name, **extra)
        self.scheduler.start()
        for job in self.scheduler.get_jobs():
            record.save(self.engine, job.id, next_run=record.iso(workdays.to_utc(job.next_run_time)))

    def stop(self) -> None:
        """Stop scheduling; a running job finishes the thing it is doing and leaves the rest."""
        self.stopping.set()
        self.scheduler.shutdown(wait=True)

    def _fire(self, name: str) -> None:
        try:
            result = runner.run(name, self.settings, self.engine, utcnow(), self.stopping.is_set)
        except Exception:
            self.on_run(name, "error")
            log.exception("scheduled job %s failed", name)
            return
        self.on_run(name, "failed" if result.errors else "ok")
        try:
            if result.did.keys() - {"empty digest"} or result.errors:
                log.info("%s", result.summary())
            self._plan(name)
        except Exception:
            log.exception("scheduled job %s ran, but its next run could not be recorded", name)

    @property
    def running(self) -> bool:
        """APScheduler is running (not stopped, and its thread alive)."""
        return bool(self.scheduler.running) and not self.stopping.is_set()

    def _plan(self, name: str) -> None:
        """Record when the job runs next and what it would do then, as things stand."""
        tz = zone(self.settings)
        following = self.triggers[name].get_next_fire_time(None, dt.datetime.now(tz))
        if following is None:
            return
        at = workdays.to_utc(following)
        with session_scope(self.engine) as session:
            expected = runner.forecast(name, self.settings, session, at)
            record.write(session, name, next_run=record.iso(at), expected=expected)
