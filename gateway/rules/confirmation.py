"""Confirmation by the sender's real address, for what needs a proof the message lacks.

An agent's message that came neither through that agent's signed token for the case nor
with a passing DMARC (or aligned DKIM) verdict of our trusted MTA, and a change of who may
read a company's cases (`[INTERLOCUTEUR AJOUT|MODIF]`) without such a verdict, are held:
a mail to the From address asks its owner to reply. The reply, through the confirmation's
own token (`assistance+k<id>-<mac>@…`, bound to that address), releases the message, which
is then processed as proven. A forger never sees the token, so nothing acts in their name.
Never commits.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from gateway.models import Case, Confirmation, Disposition
from gateway.outbound import token
from gateway.pipeline.work import Outcome, Problem, Work

HOURS = 72          # how long a confirmation can be given
ASKS_PER_HOUR = 5   # confirmation mails to one address per hour; the rest wait for the operator
EXCERPT_LINES = 15


def proven(work: Work, by_token: bool = False) -> bool:
    """Whether the message proves its sender: through their own signed token, a passing
    verdict of our trusted MTA for their domain, or a confirmation they gave."""
    domain = (work.sender.address or "").rpartition("@")[2]
    return by_token or work.sender.auth.passes_for(domain) or _confirmed(work)


def unproven(work: Work) -> bool:
    """An agent's message that did not come through that agent's own token for the case,
    nor with another proof."""
    return not proven(work, work.reference().by_token)


def ask_agent(work: Work) -> Outcome:
    return ask(work, "agent", work.case)


def ask_contact(work: Work) -> Outcome:
    return ask(work, "contact", None)


def _confirmed(work: Work) -> bool:
    return work.session.scalar(select(Confirmation.id).where(
        Confirmation.inbound_id == work.inbound.id, Confirmation.confirmed_at.is_not(None))) is not None


def ask(work: Work, kind: str, case: Case | None) -> Outcome:
    """Hold the message and ask the From address to confirm it (once per message)."""
    case_id = case.id if case is not None else None
    address = work.sender.address or ""
    waiting = (f"waiting for confirmation by {address}: nothing acts until they reply",)
    if work.session.scalar(select(Confirmation.id).where(Confirmation.inbound_id == work.inbound.id)):
        return Outcome(Disposition.HELD, waiting, case_id)
    asked = work.session.scalar(select(func.count()).select_from(Confirmation).where(
        Confirmation.address == address, Confirmation.created_at >= work.now - dt.timedelta(hours=1))) or 0
    row = Confirmation(inbound_id=work.inbound.id, address=address, kind=kind, case_id=case_id,
                       created_at=work.now, expires_at=work.now + dt.timedelta(hours=HOURS))
    work.session.add(row)
    work.session.flush()
    if asked >= ASKS_PER_HOUR:
        return Outcome(Disposition.HELD, (f"not confirmed: {ASKS_PER_HOUR} confirmations already asked of {address} "
                              "this hour; none asked for this one",), case_id)
    lines = work.request.text.splitlines()
    me = work.sender_recipient()
    assert me is not None  # a message without a sender address never gets here
    work.outbox.post("confirm_request", [me], include_author=True, confirmation=row.id, context={
        "kind": kind, "about": case, "original_subject": work.parsed.subject, "hours": HOURS,
        "excerpt": "\n".join(lines[:EXCERPT_LINES]), "more": len(lines) > EXCERPT_LINES,
        "files": [a.filename for a in work.parsed.attachments]})
    return Outcome(Disposition.HELD, waiting, case_id)


def given(work: Work) -> bool:
    """A reply through the token of a confirmation mail issued to its sender."""
    return answered(work) is not None


def answered(work: Work) -> Confirmation | None:
    """The confirmation this message gives: a reply through a confirmation token issued to
    its sender."""
    if not work.sender.address:
        return None
    key = token.secret(work.session, work.settings)
    for address in list(work.inbound.envelope_to) + list(work.parsed.to) + list(work.parsed.cc):
        tok = work.settings.support.mailbox.token_of(address)
        number = token.verify_confirmation(key, tok, work.sender.address) if tok else None
        if number is not None:
            return work.session.get(Confirmation, number, with_for_update=True)
    return None


def release(work: Work) -> Outcome:
    """Record the confirmation; the held message is then processed again, as proven."""
    row = answered(work)
    assert row is not None
    if row.confirmed_at is not None:
        return Outcome(Disposition.IGNORED, (f"message {row.inbound_id} was already confirmed",), row.case_id)
    if row.expires_at < work.now:
        return work.refuse([Problem("confirmation_expired", {"hours": HOURS})])
    row.confirmed_at = work.now
    return Outcome(Disposition.APPENDED, (f"confirms message {row.inbound_id}",), row.case_id, release=row.inbound_id)
