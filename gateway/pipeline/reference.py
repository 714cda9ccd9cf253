"""Which case a message speaks of: its signed reply token, its `[Dossier #N]` tag, or the
threading headers that name a message of a case.

Never sends mail; never commits. A case found here is only a candidate: the rules
(gateway/rules/) decide whether the sender may touch it.
"""
from __future__ import annotations

import re
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


# A tag of the subject that ends in a number (`[Dossier #12]`, `[SUIVI #12]`): a case it may
# name, read ahead; the subject's grammar (parse_subject) says which, later.
_NUMBERED_TAG = re.compile(r"\[[^\[\]]*?#\s*(\d{1,12})\s*\]")
_BY_NUMBERS = _CASE.where(Case.id.in_(bindparam("numbers", expanding=True))).order_by(Case.id)
_IN_THREADS = (select(InboundMessage.message_id, InboundMessage.case_id)
               .where(InboundMessage.message_id.in_(bindparam("ids", expanding=True)),
                      InboundMessage.case_id.is_not(None)))
_THREADS = select(Case.thread_id, Case.id).where(Case.thread_id.in_(bindparam("ids", expanding=True)))
# session.info: the cases read ahead by number, and the case found ahead for Message-IDs, by
# a message of the case (first) and by the thread a case began (second), for `find_case`.
_READ, _BY_MESSAGE, _BY_THREAD_ID = "cases_read", "cases_by_message", "cases_by_thread"


def read_cases(session: Session, settings: Settings, batch: list[tuple[ParsedMail, Claimed]]) -> None:
    """Read (and lock) in a few statements the cases a batch's messages may refer to, which
    `find_case` then takes from the session instead of reading each: the numbers their
    tokens and subjects' numbered tags name, and the cases of the Message-IDs they answer (the
    gateway's own mails, read first by `our_mails`; the messages of a case; the thread a
    case began). A number that proves not to be the message's (a token of another sender)
    costs a row read for nothing. What is not found here (a case a message before it in the
    batch opens) is looked for by `find_case` as before. The rows are locked in the order
    of their numbers, whatever the order of the messages."""
    numbers: set[int] = set()
    ids: set[str] = set()
    for parsed, inbound in batch:
        numbers.update(n for tok in recipient_tokens(parsed, inbound, settings)
                       if (n := token.number_named(tok)) is not None)
        numbers.update(int(n) for n in _NUMBERED_TAG.findall(parsed.subject))
        threads = threading_ids(parsed)
        ours = our_mails(session, threads)
        numbers.update(m.case_id for m in ours.values() if m.case_id is not None)
        ids.update(threads)
    by_message: dict[str, int] = session.info.setdefault(_BY_MESSAGE, {})
    by_thread: dict[str, int] = session.info.setdefault(_BY_THREAD_ID, {})
    wanted_ids = sorted(ids)
    for start in range(0, len(wanted_ids), 500):
        some = {"ids": wanted_ids[start:start + 500]}
        with session.no_autoflush:
            by_message.update((m, c) for m, c in session.execute(_IN_THREADS, some) if m and c)
            by_thread.update((t, c) for t, c in session.execute(_THREADS, some) if t)
    numbers.update(by_message.values(), by_thread.values())
    read: dict[int, Case] = session.info.setdefault(_READ, {})
    wanted = sorted(n for n in numbers if bounds.is_case_number(n) and n not in read)
    if wanted:
        with session.no_autoflush:
            read.update((case.id, case) for case in session.scalars(_BY_NUMBERS, {"numbers": wanted}).unique())


def _read_ahead(session: Session, number: int | None, ids: list[str]) -> Case | None:
    """The case `read_cases` read for this number, or for these Message-IDs as `_BY_THREAD`
    would find it; None when it did not (then look for it)."""
    if number is None:
        by_message, by_thread = session.info.get(_BY_MESSAGE, {}), session.info.get(_BY_THREAD_ID, {})
        number = next((by_message[i] for i in ids if i in by_message), None)
        if number is None:
            number = next((by_thread[i] for i in ids if i in by_thread), None)
    case: Case | None = session.info.get(_READ, {}).get(number)
    return case


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
    ahead = _read_ahead(session, number, ids)
    if ahead is not None:
        return Reference(ahead, by_token)
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
