"""Licence expiry: an active licence whose `ends_on` date has passed (the licence is valid
through that local day) becomes inactive, and sales administration is told.

Sales administration hears of it once per licence and end date. A licence that an import
made active again with the same past end date is made inactive again without a second
notice: to extend a licence, move its `ends_on`. Never commits.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.jobs.clock import Clock
from gateway.jobs.common import Item, Job, post, staff, today
from gateway.models import OPEN_STATUSES, Case, Licence, LicenceExpiry


def find(settings: Settings, session: Session, at: dt.datetime) -> list[Item]:
    ids = session.scalars(select(Licence.id).where(
        Licence.active.is_(True), Licence.ends_on < today(settings, at)).order_by(Licence.id))
    return [Item(i, "expired") for i in ids]


def act(settings: Settings, session: Session, clock: Clock, licence_id: int) -> str | None:
    """Make one licence inactive and tell sales administration; None if it no longer applies."""
    # The conditional update comes first: it locks the row, and a second gateway, once we
    # commit, finds the licence inactive and changes nothing.
    changed = session.execute(
        update(Licence).where(Licence.id == licence_id, Licence.active.is_(True),
                              Licence.ends_on < today(settings, clock.at))
        .values(active=False).execution_options(synchronize_session=False))
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    licence = session.get(Licence, licence_id, populate_existing=True)
    assert licence is not None and licence.ends_on is not None
    try:
        with session.begin_nested():
            session.add(LicenceExpiry(licence_id=licence.id, ends_on=licence.ends_on, at=clock.at))
    except IntegrityError:
        return "made inactive again"
    open_cases = session.scalar(select(func.count()).select_from(Case).where(
        Case.licence_id == licence.id, Case.status.in_(OPEN_STATUSES))) or 0
    post(session, settings, clock.now, "licence_expired", [staff(settings, settings.sales_admin.address)], context={
        "licence": licence, "client": licence.client, "ends_on": licence.ends_on, "open_cases": open_cases})
    return "expired"


JOB = Job("licence-expiry", find, act)
