"""Which case a message speaks of: its signed reply token, its `[Dossier #N]` tag, or the
threading headers that name a message of a case.

Never sends mail; never commits. A case found here is only a candidate: the rules
(gateway/rules/) decide whether the sender may touch it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import bounds
from gateway.config import Settings
from gateway.models import Case, InboundMessage, OutboundMessage
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


def find_case(session: Session, settings: Settings, parsed: ParsedMail, request: Request,
              inbound: Claimed, sender: Sender) -> Reference:
    """The case a message refers to: signed token, then subject tag, then threading headers.

    The case row is locked for the rest of the transaction, so that two messages on one
    case are applied one after the other."""
    number, by_token = _case_number(session, settings, parsed, request, inbound, sender)
    if number is None or not bounds.is_case_number(number):
        return Reference(None)
    return Reference(session.get(Case, number, with_for_update=True), by_token)


def _case_number(session: Session, settings: Settings, parsed: ParsedMail, request: Request,
                 inbound: Claimed, sender: Sender) -> tuple[int | None, bool]:
    if sender.address:
        key = token.secret(session, settings)
        for tok in recipient_tokens(parsed, inbound, settings):
            number = token.verify(key, tok, sender.address)
            if number is not None:
                return number, True
    if request.case_number is not None:
        return request.case_number, False
    ids = [i for i in dict.fromkeys(parsed.in_reply_to + tuple(reversed(parsed.references)))][:20]
    if not ids:
        return None, False
    case_id = session.scalar(select(OutboundMessage.case_id).where(
        OutboundMessage.message_id.in_(ids), OutboundMessage.case_id.is_not(None)).limit(1))
    if case_id is None:
        case_id = session.scalar(select(InboundMessage.case_id).where(
            InboundMessage.message_id.in_(ids), InboundMessage.case_id.is_not(None)).limit(1))
    if case_id is None:
        case_id = session.scalar(select(Case.id).where(Case.thread_id.in_(ids)).limit(1))
    return case_id, False
