"""Licence enforcement: work on an inactive licence is refused, sales administration told.

The customer gets a notice naming sales administration; sales administration gets an
alert at most once per licence per day (a unique row per licence and day decides, so two
gateways at once still send one). Never commits.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.models import Case, Licence, LicenceRefusal, SalesAlert
from gateway.outbound.outbox import AUTO_GENERATED, Recipient
from gateway.pipeline.work import Outcome, Problem, Work


def inactive(work: Work) -> bool:
    """A request on a case whose licence is inactive (closing still works: close.py comes first)."""
    return work.case is not None and not work.case.licence.active


def apply(work: Work) -> Outcome:
    case = work.case
    assert case is not None
    flags = work.request.flags
    kind = "priority" if "priority" in flags else "info" if "info" in flags else "message"
    return refuse_inactive(work, case.licence, kind, case)


def refuse_inactive(work: Work, licence: Licence, request: str, case: Case | None = None) -> Outcome:
    """Record the refusal, alert sales administration once a day, and tell the customer."""
    session = work.session
    session.add(LicenceRefusal(licence_id=licence.id, inbound_id=work.inbound.id, at=work.now,
                               sender=work.sender.address or "", subject=work.parsed.subject,
                               request=request))
    alerted = _alert_once(work, licence, request)
    outcome = work.refuse([Problem("licence_inactive", {"serial": licence.serial})], case=case,
                          kind="licence_inactive", extra={"licence": licence})
    reasons = outcome.reasons + (("sales administration alerted",) if alerted else ())
    return Outcome(outcome.outcome, reasons, outcome.case_id)


def _alert_once(work: Work, licence: Licence, request: str) -> bool:
    day = work.now.date()
    exists = work.session.scalar(select(SalesAlert.id).where(
        SalesAlert.licence_id == licence.id, SalesAlert.day == day))
    if exists is not None:
        return False
    try:
        with work.session.begin_nested():
            work.session.add(SalesAlert(licence_id=licence.id, day=day))
    except IntegrityError:
        return False
    address = work.settings.sales_admin.address
    work.outbox.post("sales_alert", [Recipient(address, "", work.settings.support.language)],
                     context={"licence": licence, "client": licence.client,
                              "sender": work.sender, "subject": work.parsed.subject,
                              "date": work.now, "request": request},
                     auto_submitted=AUTO_GENERATED)
    return True

