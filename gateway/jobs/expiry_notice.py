"""Licence expiry warning: `[licences] expiry_notice_days` (30) before an active licence's
`ends_on`, the client's active contacts are told when it ends and whom to call (sales
administration's phone and address) to renew it.

Once per licence and end date: a unique row (licence_notices) decides, so a second run, or
a second gateway, warns nobody twice; a licence renewed to a new end date is warned again
before that one. A licence whose end date has already passed is licence-expiry's (expiry.py),
not this job's. Never commits.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import portfolio
from gateway.config import Settings
from gateway.jobs.clock import Clock
from gateway.jobs.common import Item, Job, post, today
from gateway.models import CONTACT_ACTIVE, Contact, Licence, LicenceNotice
from gateway.pipeline.work import contact_recipient


def _window(settings: Settings, at: dt.datetime) -> tuple[dt.date, dt.date]:
    """The end dates due a warning on the local day of `at`: from that day to N days on."""
    first = today(settings, at)
    return first, first + dt.timedelta(days=settings.licences.expiry_notice_days)


def find(settings: Settings, session: Session, at: dt.datetime) -> list[Item]:
    if settings.licences.expiry_notice_days <= 0:
        return []
    first, last = _window(settings, at)
    warned = select(LicenceNotice.id).where(LicenceNotice.licence_id == Licence.id,
                                            LicenceNotice.ends_on == Licence.ends_on)
    ids = session.scalars(select(Licence.id).where(
        Licence.active.is_(True), Licence.ends_on >= first, Licence.ends_on <= last, ~warned.exists())
        .order_by(Licence.id))
    return [Item(i, "warned") for i in ids]


def act(settings: Settings, session: Session, clock: Clock, licence_id: int) -> str | None:
    """Warn the contacts of one licence; None if it is no longer due (or was warned)."""
    first, last = _window(settings, clock.at)
    # A write first: it locks the licence row, so a second gateway waits and then finds the
    # notice row below already there.
    session.execute(update(Licence).where(Licence.id == licence_id).values(ends_on=Licence.ends_on)
                    .execution_options(synchronize_session=False))
    licence = session.get(Licence, licence_id, populate_existing=True)
    if (settings.licences.expiry_notice_days <= 0 or licence is None or not licence.active
            or licence.ends_on is None or not first <= licence.ends_on <= last):
        return None
    try:
        with session.begin_nested():
            session.add(LicenceNotice(licence_id=licence.id, ends_on=licence.ends_on, at=clock.at))
    except IntegrityError:
        return None
    contacts = list(session.scalars(select(Contact).where(
        Contact.client_id == licence.client_id, Contact.status == CONTACT_ACTIVE).order_by(Contact.id)))
    if not contacts:
        return "nobody to warn"
    post(session, settings, clock.now, "licence_expiring", [contact_recipient(c) for c in contacts], context={
        "licence": portfolio.licence_line(licence), "client": licence.client, "ends_on": licence.ends_on,
        "days": (licence.ends_on - first).days})
    return "warned"


JOB = Job("expiry-notice", find, act)
