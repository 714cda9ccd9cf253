"""What a client holds, as the old portal showed it: its licences (the grid with a green or
red telephone) and its interlocuteurs with their state and the open cases each is main
contact of. Plain values for the templates; reads only, never commits.

Used by `[LICENCES]` and `[INTERLOCUTEURS]` (gateway/rules/), by the welcome mails of a
new contact, and by the licence expiry warning (gateway/jobs/expiry_notice.py).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.models import CONTACT_ACTIVE, CONTACT_PENDING, OPEN_STATUSES, Case, Client, Contact, Licence

LIMIT = 200         # licences or contacts shown per client; the mail says how many more there are
CASES_SHOWN = 20    # case numbers shown per contact


@dataclass(frozen=True)
class LicenceLine:
    serial: str
    product: str
    modules: tuple[str, ...]
    active: bool
    ends_on: dt.date | None


@dataclass(frozen=True)
class ContactLine:
    name: str
    email: str
    phone: str
    state: str                        # active, pending or failing
    cases: tuple[int, ...] = ()       # open cases it is main contact of (at most CASES_SHOWN)
    more_cases: int = 0


@dataclass(frozen=True)
class Holding:
    """One client and what the mail shows of it: `lines`, and `total` before the limit."""
    code: str
    name: str
    lines: list[LicenceLine] | list[ContactLine] = field(default_factory=list)
    total: int = 0


def licence_line(licence: Licence) -> LicenceLine:
    return LicenceLine(licence.serial, licence.product, tuple(str(m) for m in licence.modules or ()),
                       licence.active, licence.ends_on)


def client_licences(session: Session, client_id: int) -> list[LicenceLine]:
    """The client's licences, active ones first, then by serial (at most LIMIT)."""
    return [licence_line(lic) for lic in session.scalars(
        select(Licence).where(Licence.client_id == client_id)
        .order_by(Licence.active.desc(), Licence.serial).limit(LIMIT))]


def licences(session: Session, clients: Sequence[Client]) -> list[Holding]:
    """For each client, its licences (active first) and how many it has in all."""
    out = []
    for client in clients:
        count = session.scalar(select(func.count()).select_from(Licence).where(Licence.client_id == client.id))
        out.append(Holding(client.code, client.name, client_licences(session, client.id), count or 0))
    return out


def contact_state(contact: Contact) -> str:
    """failing (a delivery to it failed), pending (registered, not confirmed) or active."""
    if contact.failing_since is not None:
        return "failing"
    return "pending" if contact.status == CONTACT_PENDING else "active"


def contacts(session: Session, clients: Sequence[Client]) -> list[Holding]:
    """For each client, its active and pending contacts (removed ones are not shown), by
    name, each with the open cases it is main contact of."""
    out = []
    for client in clients:
        people = list(session.scalars(
            select(Contact).where(Contact.client_id == client.id,
                                  Contact.status.in_((CONTACT_ACTIVE, CONTACT_PENDING)))
            .order_by(Contact.name, Contact.email)))
        owned = _open_cases(session, client.id)
        lines = [ContactLine(c.name, c.email, c.phone, contact_state(c), tuple(owned.get(c.id, [])[:CASES_SHOWN]),
                             max(0, len(owned.get(c.id, [])) - CASES_SHOWN)) for c in people[:LIMIT]]
        out.append(Holding(client.code, client.name, lines, len(people)))
    return out


def _open_cases(session: Session, client_id: int) -> dict[int, list[int]]:
    """Main contact id -> the numbers of the client's open cases it is main contact of."""
    owned: dict[int, list[int]] = {}
    for number, contact_id in session.execute(
            select(Case.id, Case.main_contact_id).where(Case.client_id == client_id,
                                                       Case.status.in_(OPEN_STATUSES)).order_by(Case.id)):
        owned.setdefault(contact_id, []).append(number)
    return owned
