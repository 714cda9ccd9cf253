"""Naming a case's main contact (its "interlocuteur"): an `Interlocuteur :` line (or `Contact
principal :`, `Contact :`, `Main contact :`) at the top of the body, or `[INTERLOCUTEUR
adresse]` in the subject. The value is an address, or the name the contact is registered
with.

When a case opens (`choose`, from open_case.py), the sender names a colleague: the case is
theirs and the sender joins its distribution list. On an open case (`apply`), its main
contact or a proven agent hands it over: the new main contact leaves the distribution list,
the former one joins it, both are told. The one named must be an active contact of the
case's client; anything else is refused with the list of who can be named, that company's
active contacts and nobody else's. Never commits.
"""
from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select

from gateway import timeline
from gateway.models import CONTACT_ACTIVE, Case, Client, Contact, Disposition, DistributionEntry, Status
from gateway.pipeline.work import Outcome, Problem, Work, contact_recipient
from gateway.rules import answer, change, message, priority

USED = ("main_contact", "priority")
_ADDRESS = re.compile(r"[^\s<>,;\[\]]+@[^\s<>,;\[\]]+")


def wanted(work: Work) -> bool:
    """The message names a main contact; on a case, one other than the case's (a reply to
    the opening mail still carries its [INTERLOCUTEUR …] tag: that is just a message)."""
    if not work.request.fields.get("main_contact", "").strip():
        return False
    if work.case is None:
        return True
    named, _ = _named(work, work.case.client)
    return named is None or named.id != work.case.main_contact_id


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in folded if not unicodedata.combining(c)).casefold().split())


def _named(work: Work, client: Client) -> tuple[Contact | None, str]:
    """The contact of `client` the message names and, when none can be, why: "unknown" (no
    contact of this company has that address or name) or "not_active" (pending, inactive)."""
    value = _fold(work.request.fields["main_contact"].strip().strip("<>"))
    address = _ADDRESS.search(value)
    value = address.group(0) if address else value
    found = [c for c in work.session.scalars(select(Contact).where(Contact.client_id == client.id)
                                             .order_by(Contact.id))
             if c.email.casefold() == value or (c.name and _fold(c.name) == value)]
    active = next((c for c in found if c.status == CONTACT_ACTIVE), None)
    return active, "" if active else ("not_active" if found else "unknown")


def candidates(work: Work, client: Client) -> list[Contact]:
    """Who can be named: the client's active contacts, by name."""
    return list(work.session.scalars(select(Contact).where(
        Contact.client_id == client.id, Contact.status == CONTACT_ACTIVE).order_by(Contact.name, Contact.email)))


def refuse(work: Work, client: Client, reason: str, case: Case | None = None) -> Outcome:
    value = work.request.fields.get("main_contact", "").strip()
    return work.refuse([Problem("main_contact_refused", {"named": value, "reason": reason})], case=case,
                       kind="main_contact_refused", extra={
                           "named": value, "reason": reason, "client": client,
                           "candidates": candidates(work, client)})


def choose(work: Work, client: Client, sender: Contact) -> Contact | Outcome:
    """The main contact of a case the sender opens: the one named, or the sender."""
    if not wanted(work):
        return sender
    named, reason = _named(work, client)
    return named if named is not None else refuse(work, client, reason)


def apply(work: Work) -> Outcome:
    """Hand an open case over to the contact named; what else the message says follows."""
    case = work.case
    assert case is not None
    me = work.sender.contact_of(case.client_id)
    if work.sender.agent is None and (me is None or me.id != case.main_contact_id):
        return refuse(work, case.client, "not_allowed", case)
    if case.status == Status.CLOSED:
        return refuse(work, case.client, "closed", case)
    named, reason = _named(work, case.client)
    if named is None or named.id == case.main_contact_id:
        return refuse(work, case.client, reason or "already", case)
    former = case.main_contact
    _swap(work, case, former, named)
    work.event(case, "main_contact_change", timeline.main_contact_change(former.email, named.email))
    case.updated_at = work.now
    cc = [contact_recipient(former)]
    author = work.sender_recipient()
    if work.sender.agent is not None and author is not None:
        cc.append(author)
    work.outbox.post("main_contact_changed", [contact_recipient(named)], cc, case=case, include_author=True,
                     context={"former": former, "author": work.sender})
    reasons = (f"main contact: {former.email} -> {named.email}",)
    more = _then(work)
    return Outcome(more.outcome if more else Disposition.APPENDED, reasons + (more.reasons if more else ()), case.id)


def _then(work: Work) -> Outcome | None:
    """What else the message asks, once the case is handed over: a change of criticality or
    module, priority, an answer or a message (without the lines the handover used)."""
    if change.wanted(work):
        return change.apply(work, used=USED + change.USED)
    if work.sender.agent is None and "priority" in work.request.flags:
        return priority.apply(work, used=USED)
    if not (work.request.body(USED) or work.parsed.attachments):
        return None
    return answer.apply(work) if work.sender.agent is not None else message.apply(work, used=USED)


def _swap(work: Work, case: Case, former: Contact, named: Contact) -> None:
    """`named` becomes the main contact: off the distribution list; `former` onto it."""
    for entry in list(case.distribution):
        if entry.contact_id == named.id:
            case.distribution.remove(entry)
    case.main_contact = named
    if former.status == CONTACT_ACTIVE and all(e.contact_id != former.id for e in case.distribution):
        case.distribution.append(DistributionEntry(case_id=case.id, contact_id=former.id, contact=former))
    work.session.flush()
