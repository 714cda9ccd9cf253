"""The daily sales-administration digest of requests refused on inactive licences.

One digest per local day, keyed by the last day it covers (yesterday): it lists every
refusal from the end of the previous digest (the first one: from yesterday's start) to
today's local midnight, so a gateway that was down sends one digest covering the gap. A
day without refusals is recorded and sends nothing. Never commits.
"""
from __future__ import annotations

import datetime as dt
from itertools import groupby

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import workdays
from gateway.config import Settings
from gateway.jobs.common import Item, Job, post, staff, today, zone
from gateway.models import Client, Licence, LicenceRefusal, SalesDigest


def find(settings: Settings, session: Session, now: dt.datetime) -> list[Item]:
    day = today(settings, now) - dt.timedelta(days=1)
    done = session.scalar(select(SalesDigest.id).where(SalesDigest.day == day))
    return [] if done is not None else [Item(day.toordinal(), "digest")]


def act(settings: Settings, session: Session, now: dt.datetime, key: int) -> str | None:
    """Send the digest for the day `key` (an ordinal); None if the clock says otherwise."""
    day = dt.date.fromordinal(key)
    until = workdays.local_midnight(day + dt.timedelta(days=1), zone(settings))
    if until > now:
        return None
    # The unique row per day is written first: a second gateway fails here.
    digest = SalesDigest(day=day, since=until, until=until, refusals=0, at=now)
    session.add(digest)
    session.flush()
    previous = session.scalar(select(func.max(SalesDigest.until)).where(SalesDigest.day < day))
    digest.since = min(previous or workdays.local_midnight(day, zone(settings)), until)
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
    post(session, settings, now, "sales_digest", [staff(settings, settings.sales_admin.address)], context={
        "day": day, "since": digest.since, "until": until,
        "one_day": digest.since == workdays.local_midnight(day, zone(settings)),
        "groups": groups, "total": len(rows)})
    return "digest"


JOB = Job("adv-digest", find, act)
