"""The gateway's own mail coming back, whatever a forwarder did to its headers.

A mailbox that forwards everything it receives back to the support address turns every
notice into a new message, and two such mailboxes on one case would feed each other for
ever. A copy is recognised by its `X-Loop` (see safety.is_loop), by a Message-ID the
gateway gave one of its own mails, or by its text: the text of a mail the gateway sent,
not quoted, with nothing a person added. Never writes, never commits.
"""
from __future__ import annotations

import datetime as dt
import functools
import re

from sqlalchemy import bindparam, select

from gateway.models import Delivery, Disposition, OutboundMessage
from gateway.pipeline.reference import loop_ids
from gateway.pipeline.work import Outcome, Work

CANDIDATES = 10         # recent mails to the sender compared with the text
RECENT = dt.timedelta(days=7)
SHINGLE = 6             # words: runs this long survive a forwarder re-wrapping the lines
_QUOTED = re.compile(r"^\s*[>|]")
# What a mail client writes above a forwarded message: not a person's words.
_FORWARD_LINE = re.compile(
    r"^\s*(?:-+.*-+|(?:de|from|envoy[ée]|sent|date|objet|subject|[àa]|to|cc|reply-to|r[ée]pondre [àa])\s?:.*"
    r"|.*(?:forwarded message|message transf[ée]r[ée]|original message|message d'origine).*)$",
    re.IGNORECASE)


def own_mail(work: Work) -> str | None:
    """Why this message is one of the gateway's own mails coming back, or None."""
    parsed, settings = work.parsed, work.settings
    if parsed.message_id and parsed.message_id in work.ours():
        return f"its Message-ID {parsed.message_id} is one of the gateway's own"
    # Every mail of the gateway is signed with the support's name: without it, no need to look.
    # Each word of the name appears in the text if the name does: most mails stop here.
    name, folded = settings.support.name.casefold(), parsed.text.casefold()
    if not all(part in folded for part in name.split()):
        return None
    # A forwarder puts our mail inline or below a header block (then it is not new text);
    # lines quoted with ">" are a person's reply quoting us, never a copy.
    unquoted = _words(parsed.text, skip=_QUOTED)
    if name not in " ".join(unquoted):
        return None
    body = _shingles(unquoted)
    added = _words(parsed.new_text, skip=_FORWARD_LINE)
    for outbound_id, text in _candidates(work):
        ours = _our_shingles(outbound_id, text)
        if len(ours) >= 10 and len(ours & body) >= 0.6 * len(ours) and _nothing_added(added, text, ours):
            return f"the text of outbound message {outbound_id}, come back with nothing added"
    return None


@functools.lru_cache(maxsize=128)
def _our_shingles(outbound_id: int, text: str) -> frozenset[tuple[str, ...]]:
    """One of our mails' shingles: the same mails come back as candidates for each message of
    a thread, batch after batch, and a mail's text never changes (the text is in the key:
    a process may open another database, whose mail of the same id is another)."""
    return frozenset(_shingles(_words(text)))


def _words(text: str, skip: re.Pattern[str] | None = None) -> list[str]:
    return [w for line in text.casefold().splitlines() if not (skip and skip.match(line)) for w in line.split()]


def _shingles(words: list[str]) -> set[tuple[str, ...]]:
    """The runs of `SHINGLE` words (zip builds each tuple in one step: twice as fast as slices)."""
    return set(zip(*(words[i:] for i in range(SHINGLE)), strict=False))  # the shorter ends it


def _nothing_added(words: list[str], text: str, ours: frozenset[tuple[str, ...]]) -> bool:
    """Whether the person's new text is only our own words (or nothing)."""
    if len(words) < SHINGLE:
        return set(words) <= set(_words(text))
    theirs = _shingles(words)
    return len(theirs - ours) <= 0.2 * len(theirs)


def _candidates(work: Work) -> list[tuple[int, str]]:
    """Our mails this one may be a copy of: those it refers to, and the newest sent to its
    sender. Two look-ups by index (Message-ID, shared with the case reference; recipient
    and date), then the texts by id: none of them walks the outbox, however long its history."""
    # The outbox is written by Core statements (gateway/rows.py): nothing pending to flush first.
    session, sender, now = work.session.connection(), work.sender.address, work.now
    mine = work.ours()
    wanted = {mine[i].id for i in loop_ids(work.parsed) if i in mine}
    if sender:
        wanted.update(session.scalars(_SENT_TO, {"sender": sender, "since": now - RECENT}))
    if not wanted:
        return []
    return [(row.id, row.text) for row in session.execute(_TEXTS, {"ids": sorted(wanted)})]


# Built once: building them for each message cost a third of the look-up.
_SENT_TO = (select(Delivery.message_id)
            .where(Delivery.recipient == bindparam("sender"), Delivery.created_at >= bindparam("since"))
            .order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(CANDIDATES))
_TEXTS = (select(OutboundMessage.id, OutboundMessage.text)
          .where(OutboundMessage.id.in_(bindparam("ids", expanding=True))).order_by(OutboundMessage.id.desc()))


def came_back(work: Work) -> bool:
    """The message is one of the gateway's own mails coming back."""
    return own_mail(work) is not None


def ignore(work: Work) -> Outcome:
    reason = own_mail(work)
    return Outcome(Disposition.IGNORED, (f"the gateway's own mail coming back (loop): {reason}",))
