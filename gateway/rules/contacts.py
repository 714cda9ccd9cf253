"""`[INTERLOCUTEUR AJOUT]` / `[INTERLOCUTEUR MODIF]`: an active contact manages its client's
contacts with `Nom :`, `Email :`, `Téléphone :` lines at the top of the body.

The email is required and validated (syntax, and the domain where configured); the
contact added or changed is told, the requester gets a confirmation. A removal
(`[INTERLOCUTEUR SUPPRESSION]`) is a request to support: it opens a case. Never commits.
"""
from __future__ import annotations

import re

from sqlalchemy import select

from gateway import cases, portfolio, timeline
from gateway.models import CONTACT_ACTIVE, Contact, Disposition, Licence
from gateway.outbound.outbox import new_message_id
from gateway.pipeline import known
from gateway.pipeline.grammar import normalise
from gateway.pipeline.work import Outcome, Problem, Work, contact_recipient
from gateway.rules import confirmation

ADD = ("ajout", "ajouter", "add", "nouveau", "new")
UPDATE = ("modif", "modification", "modifier", "update", "change")
REMOVE = ("suppression", "supprimer", "retrait", "remove", "delete")
FIELDS = {"nom": "name", "name": "name", "email": "email", "mail": "email", "courriel": "email",
          "adresse": "email", "adresseemail": "email", "adressecourriel": "email",
          "telephone": "phone", "tel": "phone", "phone": "phone",
          "langue": "language", "language": "language",
          "nouvelemail": "new_email", "newemail": "new_email", "nouveaumail": "new_email"}


# The value runs to the end of its line and its trailing blanks go afterwards: a lazy value
# followed by "[ \t]*$" would try a long run of blanks again from each of its positions.
_LINE = re.compile(r"^[ \t>*]*([^:\n]{2,30}?)[ \t]*:[ \t]*(\S[^\n]*)$", re.MULTILINE)


def _fields(work: Work) -> dict[str, str]:
    """The contact's fields from `Name : value` lines anywhere in the new text (a greeting
    may come first); the first line naming a field wins."""
    out: dict[str, str] = {}
    for m in _LINE.finditer(work.request.text):
        name = FIELDS.get(normalise(m.group(1)))
        if name:
            out.setdefault(name, m.group(2).rstrip(" \t")[:500])  # a field, not a text
    return out


def _valid(work: Work, raw: str) -> str | None:
    # Imported here: its tables cost about 35 ms to load, and most mail names no address to check.
    from email_validator import EmailNotValidError, validate_email
    try:
        result = validate_email(raw, check_deliverability=work.settings.contacts.check_deliverability)
    except EmailNotValidError:
        return None
    return result.normalized.lower()


def apply(work: Work) -> Outcome:
    action = normalise(work.request.command_values.get("contact", ""))
    requester = work.sender.contacts[0] if work.sender.contacts else None
    if requester is None:
        return work.refuse([Problem("contact_not_allowed")])
    if action in REMOVE:
        return _removal_case(work, requester)
    if action not in ADD + UPDATE:
        return work.refuse([Problem("contact_bad_action", {"value": action})])
    fields = _fields(work)
    if not fields.get("email"):
        return work.refuse([Problem("contact_missing_email")])
    email = _valid(work, fields["email"])
    if email is None:
        return work.refuse([Problem("contact_bad_email", {"email": fields["email"]})])
    existing = work.session.scalar(select(Contact).where(
        Contact.client_id == requester.client_id, Contact.email == email))
    language = fields.get("language", "").lower()[:2] or None
    language = language if language in ("fr", "en") else None
    if action in ADD:
        return _add(work, requester, existing, email, fields, language)
    return _update(work, requester, existing, email, fields, language)


# Adding or changing a contact changes who may read the company's cases: a From address
# proves nothing, so without our trusted MTA's verdict the requester's real address
# confirms first (confirmation.ask_contact); the checks that need no proof answer at once.

def _add(work: Work, requester: Contact, existing: Contact | None, email: str, fields: dict[str, str],
         language: str | None) -> Outcome:
    if existing is not None and existing.status == CONTACT_ACTIVE:
        return work.refuse([Problem("contact_exists", {"email": email})])
    if not confirmation.proven(work):
        return confirmation.ask_contact(work)
    contact = existing or Contact(client_id=requester.client_id, email=email)
    contact.name = fields.get("name", contact.name or "")[:255]
    contact.phone = fields.get("phone", contact.phone or "")[:64]
    contact.language = language or contact.language
    contact.status = CONTACT_ACTIVE
    work.session.add(contact)
    work.session.flush()
    known.forget(work.session)
    context = {"contact": contact, "requester": requester, "client": requester.client, "action": "add",
               "licences": portfolio.client_licences(work.session, requester.client_id)}
    work.outbox.post("contact_added", [contact_recipient(contact)], context=context)
    work.outbox.post("contact_result", [work.sender_recipient()], context=context,  # type: ignore[list-item]
                     include_author=True)
    return Outcome(Disposition.APPENDED, (f"contact {email} added to client {requester.client.code}",))


def _update(work: Work, requester: Contact, existing: Contact | None, email: str, fields: dict[str, str],
            language: str | None) -> Outcome:
    if existing is None or existing.status != CONTACT_ACTIVE:
        return work.refuse([Problem("contact_unknown", {"email": email})])
    new_email = None
    if "new_email" in fields:
        new_email = _valid(work, fields["new_email"])
        if new_email is None:
            return work.refuse([Problem("contact_bad_email", {"email": fields["new_email"]})])
        taken = work.session.scalar(select(Contact.id).where(
            Contact.client_id == requester.client_id, Contact.email == new_email))
        if taken is not None and taken != existing.id:
            return work.refuse([Problem("contact_exists", {"email": new_email})])
    if not confirmation.proven(work):
        return confirmation.ask_contact(work)
    if new_email is not None:
        existing.email = new_email
    existing.name = fields.get("name", existing.name)[:255]
    existing.phone = fields.get("phone", existing.phone)[:64]
    existing.language = language or existing.language
    known.forget(work.session)
    context = {"contact": existing, "requester": requester, "client": requester.client, "action": "update"}
    work.outbox.post("contact_added", [contact_recipient(existing)], context=context)
    work.outbox.post("contact_result", [work.sender_recipient()], context=context,  # type: ignore[list-item]
                     include_author=True)
    return Outcome(Disposition.APPENDED, (f"contact {existing.email} updated for client {requester.client.code}",))


def _removal_case(work: Work, requester: Contact) -> Outcome:
    """Removing a contact is support's decision: open a case on the client's first active licence."""
    licence = work.session.scalar(select(Licence).where(
        Licence.client_id == requester.client_id).order_by(Licence.active.desc(), Licence.id).limit(1))
    if licence is None:
        return work.refuse([Problem("contact_not_allowed")])
    fields = _fields(work)
    target = fields.get("email") or fields.get("name") or "?"
    title = work.request.title or f"Suppression d'un interlocuteur : {target}"
    case = cases.open_case(work.session, client=requester.client, contact=requester, licence=licence, module=None,
                           criticality=4, title=title, now=work.now,
                           thread_id=work.parsed.message_id or new_message_id(work.settings))
    work.event(case, "opened", work.request.text or timeline.contact_removal(target))
    context = {"not_added": [], "priority_wanted": False, "priority": None,
               "details": work.request.text, "licence": licence, "author": work.sender}
    work.outbox.post("case_opened", [contact_recipient(requester)], case=case, context=context,
                     include_author=True)
    work.outbox.post("agent_new_case", work.agents(),
                     case=case, context=context)
    return Outcome(Disposition.CREATED, (f"case {case.id} opened to remove contact {target}",), case.id)
