"""Which case a message speaks of: its signed reply token, its `[Dossier #N]` tag, or the
threading headers that name a message of a case.

Never sends mail; never commits. A case found here is only a candidate: the rules
(gateway/rules/) decide whether the sender may touch it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, aliased, joinedload

from gateway import bounds, rows
from gateway.config import Settings
from gateway.models import Case, DistributionEntry, InboundMessage, OutboundMessage
from gateway.outbound import token
from gateway.pipeline.grammar import Request
from gateway.pipeline.parse import ParsedMail

if TYPE_CHECKING:  # the unit of work refers to this module: its types only, no import cycle
    from gateway.pipeline.work import Claimed, Sender


def recipient_tokens(parsed: ParsedMail, inbound: Claimed, settings: Settings) -> list[str]:
    """Tokens in the addresses the message was delivered to (envelope first, then headers)."""
    seen = []
    for address in list(inbound.envelope_to or []) + list(parsed.to) + list(parsed.cc):
        tok = settings.support.mailbox.token_of(address)
        if tok and tok not in seen:
            seen.append(tok)
    return seen


@dataclass(frozen=True)
class Reference:
    """The case a message refers to, if any, and whether the sender's own signed token for
    that case named it (which proves an agent's message; a subject tag proves nothing)."""
    case: Case | None
    by_token: bool = False


def threading_ids(parsed: ParsedMail) -> list[str]:
    """The Message-IDs a message refers to, the nearest first (In-Reply-To, then References
    from the end), at most 20."""
    return list(dict.fromkeys(parsed.in_reply_to + tuple(reversed(parsed.references))))[:20]


def loop_ids(parsed: ParsedMail) -> list[str]:
    """The Message-IDs the loop check looks for among the gateway's own (loops.py): In-Reply-To
    and References as written, the first 10."""
    return list(dict.fromkeys(parsed.in_reply_to + parsed.references))[:10]


@dataclass(frozen=True)
class OurMail:
    """One of the gateway's own mails: its outbound id and case."""
    id: int
    case_id: int | None


# Built once (see gateway/rows.py): the gateway's own mails among some Message-IDs.
_OURS = select(OutboundMessage.message_id, OutboundMessage.id, OutboundMessage.case_id).where(
    OutboundMessage.message_id.in_(bindparam("ids", expanding=True)))


def mail_ids(parsed: ParsedMail) -> list[str]:
    """The Message-IDs the loop check and the case reference look for among the gateway's
    own: the message's own, then those it refers to."""
    own = [parsed.message_id] if parsed.message_id else []
    return list(dict.fromkeys(own + threading_ids(parsed) + loop_ids(parsed)))


def our_mails(session: Session, ids: list[str]) -> dict[str, OurMail]:
    """The gateway's own mails among `ids`, by Message-ID: looked up by index once per
    transaction (a batch asks for all its messages' at once), for the loop check (loops.py)
    and the case reference alike. What the outbox writes meanwhile joins them (rows.py)."""
    known: dict[str, tuple[int, int | None] | None] = session.info.setdefault(rows.OUR_MAILS, {})
    wanted = [i for i in dict.fromkeys(ids) if i not in known]
    known.update(dict.fromkeys(wanted))
    for start in range(0, len(wanted), 500):
        with session.no_autoflush:  # the outbox is written by Core statements: nothing pending to see
            known.update({row.message_id: (row.id, row.case_id)
                          for row in session.execute(_OURS, {"ids": wanted[start:start + 500]})})
    return {i: OurMail(*found) for i in ids if (found := known[i]) is not None}


# The case with what the rules read of it (its licence, main contact, distribution list), locked:
# one statement, by number or by the threading headers (a message of the case, or its thread).
_CASE = (select(Case).options(joinedload(Case.licence), joinedload(Case.main_contact),
                              joinedload(Case.distribution).joinedload(DistributionEntry.contact))
         .with_for_update(of=Case))
_BY_NUMBER = _CASE.where(Case.id == bindparam("number"))
_THREAD = aliased(Case)
_BY_THREAD = _CASE.where(Case.id == func.coalesce(
    select(InboundMessage.case_id).where(InboundMessage.message_id.in_(bindparam("ids", expanding=True)),
                                         InboundMessage.case_id.is_not(None)).limit(1).scalar_subquery(),
    select(_THREAD.id).where(_THREAD.thread_id.in_(bindparam("ids", expanding=True))).limit(1)
    .scalar_subquery()))


def find_case(session: Session, settings: Settings, parsed: ParsedMail, request: Request,
              inbound: Claimed, sender: Sender, ours: dict[str, OurMail]) -> Reference:
    """The case a message refers to: signed token, then subject tag, then threading headers
    (`ours`: the gateway's own mails among them, see `our_mails`).

    The case row is locked for the rest of the transaction, so that two messages on one
    case are applied one after the other."""
    number, by_token = _case_number(session, settings, parsed, request, inbound, sender)
    ids = threading_ids(parsed) if number is None else []
    number = number if number is not None else next(
        (m.case_id for i in ids if (m := ours.get(i)) is not None and m.case_id is not None), None)
    if number is not None and not bounds.is_case_number(number):
        return Reference(None)
    if number is None and not ids:
        return Reference(None)
    # Cases are written by Core statements and never change number or thread: what is
    # pending in the session (a case's new status) is written with the batch, not here.
    with session.no_autoflush:
        found = session.scalars(_BY_NUMBER, {"number": number}) if number is not None \
            else session.scalars(_BY_THREAD, {"ids": ids})
        return Reference(found.unique().first(), by_token)


def _case_number(session: Session, settings: Settings, parsed: ParsedMail, request: Request,
                 inbound: Claimed, sender: Sender) -> tuple[int | None, bool]:
    """The number a signed token or the subject's tag gives."""
    if sender.address:
        key = token.secret(session, settings)
        for tok in recipient_tokens(parsed, inbound, settings):
            number = token.verify(key, tok, sender.address)
            if number is not None:
                return number, True
    return request.case_number, False
