"""`[INSCRIPTION]`: an unknown address asks to become a contact of a client.

Whatever happens, the sender first gets the same neutral answer, so nobody can probe
which client codes or serials exist. When the serial is an active licence of that client,
the address becomes a *pending* contact and a second mail carries a confirmation code;
replying with the code activates the contact and tells the client's other contacts.
Requests are rate-limited per sender and per client. Never commits.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from sqlalchemy import func, select

from gateway import portfolio
from gateway.models import (
    CONTACT_ACTIVE,
    CONTACT_PENDING,
    Client,
    Contact,
    Disposition,
    Licence,
    Registration,
    RegistrationRequest,
    reference_key,
)
from gateway.outbound.outbox import STRANGER, Recipient
from gateway.pipeline import example, known
from gateway.pipeline.work import Outcome, Problem, Work, contact_recipient

_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")
MAX_FAILURES = 5  # wrong codes before a pending registration ends


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def apply(work: Work) -> Outcome:
    """Record the request, answer neutrally, and send a code when everything matches."""
    settings, session = work.settings.contacts, work.session
    address = work.sender.address or ""
    code = (work.request.fields.get("client") or "").strip()
    serial = (work.request.fields.get("serial") or "").strip()
    # The new contact's name: a `Nom :` / `Name :` line, else the From's display name.
    name = " ".join((work.request.fields.get("name") or work.sender.name).split())[:255]
    by_sender, by_client = _requests_today(work, address, code)
    me = Recipient(address, work.sender.name, work.sender.language)
    if by_sender >= settings.registrations_per_sender_per_day:
        return Outcome(Disposition.REFUSED, ("registration: too many requests from this sender today; no answer",))
    silence = work.stranger_silence()
    if silence:
        return Outcome(Disposition.REFUSED, (f"registration: no answer: {silence}",))
    work.outbox.post("registration_received", [me], context={"client_code": code, "serial": serial, "name": name},
                     include_author=True, audience=STRANGER if work.is_stranger() else "")
    outcome = Outcome(Disposition.APPENDED, ("registration: neutral answer sent",))
    if not name:
        return Outcome(Disposition.REFUSED, outcome.reasons + ("no name given (Nom : line)",))
    if by_client >= settings.registrations_per_client_per_day:
        return Outcome(Disposition.REFUSED, outcome.reasons + ("too many requests for this client today",))
    if work.sender.contacts or work.sender.agent is not None:
        return Outcome(Disposition.REFUSED, outcome.reasons + ("already a contact or an agent",))
    client = session.scalar(select(Client).where(Client.code_key == reference_key(code))) if code else None
    licence = session.scalar(select(Licence).where(
        Licence.serial_key == reference_key(serial), Licence.client_id == client.id)) if client and serial else None
    if client is None or licence is None or not licence.active:
        return Outcome(Disposition.REFUSED,
                       outcome.reasons + ("client code and serial do not match an active licence",))
    secret_code = _new_code(work, client, address, name)
    work.outbox.post("registration_code", [me], context={
        "code": secret_code, "client": client, "hours": settings.registration_code_hours},
        include_author=True)
    return Outcome(Disposition.APPENDED, outcome.reasons + (f"registration code sent for client {client.code}",))


def _requests_today(work: Work, address: str, code: str) -> tuple[int, int]:
    """Requests in the last day from this sender and for this client (counted by folded
    code: "c10042" and "C10042" are one client's requests); this one is recorded."""
    session, now = work.session, work.now
    day_ago = now - dt.timedelta(days=1)
    by_sender = session.scalar(select(func.count()).select_from(RegistrationRequest).where(
        RegistrationRequest.email == address, RegistrationRequest.at >= day_ago)) or 0
    by_client = session.scalar(select(func.count()).select_from(RegistrationRequest).where(
        RegistrationRequest.client_code == reference_key(code)[:64], RegistrationRequest.at >= day_ago)) or 0
    session.add(RegistrationRequest(email=address, client_code=reference_key(code)[:64], at=now))
    return by_sender, by_client


def _new_code(work: Work, client: Client, address: str, name: str) -> str:
    """A pending contact (created when new, named as the request says) and a fresh code
    for it, stored hashed."""
    session, now, settings = work.session, work.now, work.settings.contacts
    contact = session.scalar(select(Contact).where(Contact.client_id == client.id, Contact.email == address))
    if contact is None:
        contact = Contact(client_id=client.id, email=address, status=CONTACT_PENDING, language=None)
        session.add(contact)
    contact.name = name
    session.flush()
    secret_code = f"{secrets.randbelow(10**6):06d}"
    session.add(Registration(client_id=client.id, contact_id=contact.id, email=address,
                             code_hash=_hash(secret_code), created_at=now,
                             expires_at=now + dt.timedelta(hours=settings.registration_code_hours)))
    return secret_code


def pending_registration(work: Work) -> Registration | None:
    """The newest unexpired, unconfirmed registration of the sender, if any."""
    if work.sender.contacts or not work.sender.address:
        return None
    return work.session.scalar(
        select(Registration).where(Registration.email == work.sender.address,
                                   Registration.confirmed_at.is_(None),
                                   Registration.expires_at >= work.now)
        .order_by(Registration.id.desc()).limit(1))


def code_given(work: Work) -> bool:
    """A pending registration's sender writing again: "[INSCRIPTION 123456]" or a reply to
    the code mail confirms; a bare "[INSCRIPTION]" asks again (a new code)."""
    request = work.request
    return (pending_registration(work) is not None
            and ("register" not in request.flags or bool(request.command_values.get("register"))))


def confirm(work: Work) -> Outcome:
    """Activate the pending contact when the message carries its code. Only the first
    6-digit number of the message is read (a list of every code proves nothing), and a few
    wrong codes end the registration."""
    registration = pending_registration(work)
    assert registration is not None
    found = _CODE.search(f"{work.parsed.subject}\n{work.parsed.new_text}")
    if found is None or not hmac.compare_digest(_hash(found.group(1)), registration.code_hash):
        registration.failures += 1
        if registration.failures >= MAX_FAILURES:
            registration.expires_at = work.now - dt.timedelta(seconds=1)
            return work.refuse([Problem("registration_bad_code", {"ended": "yes"})])
        return work.refuse([Problem("registration_bad_code")])
    contact = work.session.get(Contact, registration.contact_id)
    assert contact is not None
    contact.status = CONTACT_ACTIVE
    registration.confirmed_at = work.now
    known.forget(work.session)
    client = work.session.get(Client, registration.client_id)
    assert client is not None
    work.outbox.post("registration_done", [contact_recipient(contact)], include_author=True, context={
        "client": client, "contact": contact, "licences": portfolio.client_licences(work.session, client.id),
        "example": example.of_client(work.session, client)})
    others = list(work.session.scalars(select(Contact).where(
        Contact.client_id == client.id, Contact.status == CONTACT_ACTIVE,
        Contact.id != contact.id).order_by(Contact.id)))
    if others:
        work.outbox.post("contact_joined", [contact_recipient(c) for c in others],
                         context={"contact": contact, "client": client, "how": "registration"})
    return Outcome(Disposition.APPENDED, (f"contact {contact.email} activated for client {client.code}",))
