"""`[DIFFUSION +a@x.fr -b@y.fr]` on a case: change its distribution list.

Only active contacts of the case's client can be added; the main contact cannot be
removed. Each change is a `distribution_change` event; the main contact (and the author,
when someone else) gets a confirmation listing what was done and what was refused, and
why. Each person added is told what the case is and how to answer; each person removed,
that they will no longer receive it (the author, already confirmed, is not told twice).
Never commits.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from gateway import timeline
from gateway.models import CONTACT_ACTIVE, Case, Contact, Disposition, DistributionEntry
from gateway.outbound.outbox import NOTICE
from gateway.pipeline.grammar import split_addresses
from gateway.pipeline.work import Outcome, Problem, Work, contact_recipient
from gateway.refdata import normalise_email


@dataclass(frozen=True)
class Change:
    sign: str      # "+" or "-"
    address: str
    done: bool
    reason: str    # added, removed, already, not_listed, not_a_contact, main_contact, invalid
    contact: Contact | None = None  # who was added or removed, when done


def apply(work: Work) -> Outcome:
    case = work.case
    assert case is not None
    value = work.request.fields.get("distribution", "")
    items = split_addresses(value)
    if not items:
        return work.refuse([Problem("distribution_empty")], case=case)
    entries = {e.contact.email: e for e in case.distribution}
    changes = [_apply(work, case, entries, sign, raw) for sign, raw in items]
    done = [c for c in changes if c.done]
    if done:
        work.event(case, "distribution_change", timeline.distribution_change(
            [c.address for c in done if c.sign == "+"], [c.address for c in done if c.sign == "-"]))
        case.updated_at = work.now
    work.session.flush()
    work.session.refresh(case, ["distribution"])
    to = [contact_recipient(case.main_contact)]
    cc = [work.sender_recipient()] if work.sender.address != case.main_contact.email else []
    work.outbox.post("distribution_changed", to, cc, case=case,  # type: ignore[arg-type]
                     context={"changes": changes, "author": work.sender}, include_author=True)
    for sign, kind in (("+", "distribution_added"), ("-", "distribution_removed")):
        told = [contact_recipient(c.contact) for c in done if c.sign == sign and c.contact is not None]
        if told:
            work.outbox.post(kind, told, case=case, context={"author": work.sender}, audience=NOTICE)
    reasons = tuple(f"{c.sign}{c.address}: {c.reason}" for c in changes)
    return Outcome(Disposition.APPENDED, reasons, case.id)


def _apply(work: Work, case: Case, entries: dict[str, DistributionEntry], sign: str, raw: str) -> Change:
    address = normalise_email(raw)
    if address is None:
        return Change(sign, raw, False, "invalid")
    if sign == "-":
        if address == case.main_contact.email:
            return Change(sign, address, False, "main_contact")
        entry = entries.pop(address, None)
        if entry is None:
            return Change(sign, address, False, "not_listed")
        work.session.delete(entry)
        return Change(sign, address, True, "removed", entry.contact)
    if address in entries or address == case.main_contact.email:
        return Change(sign, address, False, "already")
    contact = work.session.scalar(select(Contact).where(
        Contact.client_id == case.client_id, Contact.email == address, Contact.status == CONTACT_ACTIVE))
    if contact is None:
        return Change(sign, address, False, "not_a_contact")
    entry = DistributionEntry(case_id=case.id, contact_id=contact.id, contact=contact)
    work.session.add(entry)
    entries[address] = entry
    return Change(sign, address, True, "added", contact)
