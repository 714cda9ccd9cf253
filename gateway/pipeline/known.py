"""Reference data a batch of messages reads: the active contacts behind its senders (with
their clients) and those clients' licences, read once for the batch's transaction (and,
with `prefetch_batch`, the gateway's own mails the batch names: pipeline/reference.py).

`prefetch` reads them for a batch's senders in two statements; a sender or a client met
later in the transaction is read then, once. The rows are the session's own objects (what
a query in the same transaction would return); a rule that changes who is an active
contact calls `forget` (the next look-up reads again). Licences change only through the
operator's import, never in the pipeline's transaction. Never writes, never commits.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from gateway.models import CONTACT_ACTIVE, Contact, Licence
from gateway.pipeline.parse import ParsedMail
from gateway.pipeline.reference import mail_ids, our_mails

_CONTACTS, _LICENCES = "known_contacts", "known_licences"
# Built once (see gateway/rows.py).
_ACTIVE = (select(Contact).options(joinedload(Contact.client))
           .where(Contact.email.in_(bindparam("emails", expanding=True)), Contact.status == CONTACT_ACTIVE)
           .order_by(Contact.id))
_OF_CLIENTS = select(Licence).where(Licence.client_id.in_(bindparam("clients", expanding=True))).order_by(Licence.id)


def prefetch_batch(session: Session, mails: list[ParsedMail]) -> None:
    """What a batch of messages will look up, in one statement for each kind: the contacts
    behind their senders and Cc addresses (a new case's list), those clients' licences, the
    gateway's own mails they name."""
    prefetch(session, [a for m in mails for a in (m.from_addr, *m.cc)])
    our_mails(session, [i for m in mails for i in mail_ids(m)])


def prefetch(session: Session, addresses: Iterable[str | None]) -> None:
    """Read the active contacts of these addresses not read yet, and their clients' licences."""
    known: dict[str, tuple[Contact, ...]] = session.info.setdefault(_CONTACTS, {})
    wanted = sorted({a for a in addresses if a} - known.keys())
    if not wanted:
        return
    found: dict[str, list[Contact]] = {a: [] for a in wanted}
    for contact in session.scalars(_ACTIVE, {"emails": wanted}):
        found[contact.email].append(contact)
    known.update((a, tuple(c)) for a, c in found.items())
    _read_licences(session, {c.client_id for cs in found.values() for c in cs})


def contacts(session: Session, address: str) -> tuple[Contact, ...]:
    """The active contacts with this address, one per client, in the order they were made."""
    if address not in session.info.get(_CONTACTS, {}):
        prefetch(session, [address])
    found: tuple[Contact, ...] = session.info[_CONTACTS][address]
    return found


def licences(session: Session, client_id: int) -> list[Licence]:
    """The client's licences, in the order they were made."""
    _read_licences(session, {client_id})
    found: list[Licence] = session.info[_LICENCES][client_id]
    return found


def forget(session: Session) -> None:
    """Who is an active contact changed: read the contacts again when next asked."""
    session.info.pop(_CONTACTS, None)


def _read_licences(session: Session, clients: set[int]) -> None:
    known: dict[int, list[Licence]] = session.info.setdefault(_LICENCES, {})
    wanted = sorted(clients - known.keys())
    if not wanted:
        return
    known.update((c, []) for c in wanted)
    for licence in session.scalars(_OF_CLIENTS, {"clients": wanted}):
        known[licence.client_id].append(licence)
