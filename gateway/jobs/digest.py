"""The daily sales-administration digest of requests refused on inactive licences.

One digest per local day of the job's clock, keyed by the last day it covers (yesterday):
it lists every refusal from the end of the latest digest (the first one: from yesterday's
start) to today's local midnight, so a gateway that was down sends one digest covering the
gap. A clock ahead of the real time stops the digest at the real time. A day without
refusals is recorded and sends nothing. Never commits.
"""
from __future__ import annotations

import datetime as dt
from itertools import groupby

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import workdays
from gateway.config import Settings
from gateway.jobs.clock import Clock
from gateway.jobs.common import Item, Job, post, staff, today, zone
from gateway.models import Client, Licence, LicenceRefusal, SalesDigest


def find(settings: Settings, session: Session, at: dt.datetime) -> list[Item]:
    day = today(settings, at) - dt.timedelta(days=1)
    done = session.scalar(select(SalesDigest.id).where(SalesDigest.day == day))
    return [] if done is not None else [Item(day.toordinal(), "digest")]


def act(settings: Settings, session: Session, clock: Clock, key: int) -> str | None:
    """Send the digest for the day `key` (an ordinal); None if the job's clock has not
    reached that day's end."""
    day, tz = dt.date.fromordinal(key), zone(settings)
    start, end = workdays.local_midnight(day, tz), workdays.local_midnight(day + dt.timedelta(days=1), tz)
    if end > clock.at:
        return None
    # A clock ahead of the real time covers no refusal still to come: the next digest will.
    until = min(end, clock.now)
    # The unique row per day is written first: a second gateway fails here.
    digest = SalesDigest(day=day, since=until, until=until, refusals=0, at=clock.at)
    session.add(digest)
    session.flush()
    # A digest starts where the latest one ended, whatever day that one was for: a day run
    # again by hand, or after a clock ahead, reports nothing twice.
    previous = session.scalar(select(func.max(SalesDigest.until)).where(SalesDigest.id != digest.id))
    first = workdays.local_midnight(today(settings, until) - dt.timedelta(days=1), tz)  # the day before
    digest.since = min(previous or first, until)
    rows = session.execute(
        select(LicenceRefusal, Licence, Client).join(Licence, LicenceRefusal.licence_id == Licence.id)
        .join(Client, Licence.client_id == Client.id)
        .where(LicenceRefusal.at >= digest.since, LicenceRefusal.at < until)
        .order_by(Client.code, Licence.serial, LicenceRefusal.at, LicenceRefusal.id)).all()
    digest.refusals = len(rows)
    if not rows:
        return "empty digest"
    groups = [{"licence": licence, "client": client,
               "refusals": [{"at": r.at, "sender": r.sender, "subject": r.subject,
                             "request": r.request} for r, _, _ in members]}
              for (licence, client), members in
              ((k, list(g)) for k, g in groupby(rows, key=lambda row: (row[1], row[2])))]
    post(session, settings, clock.now, "sales_digest", [staff(settings, settings.sales_admin.address)], context={
        "day": day if until == end else today(settings, until), "since": digest.since, "until": until,
        "one_day": digest.since == start and until == end, "groups": groups, "total": len(rows)})
    return "digest"


JOB = Job("adv-digest", find, act)
