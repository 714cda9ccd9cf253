"""The transactional outbox: composed messages written in the caller's transaction.

`Outbox.post` renders a template for each language among the recipients and writes one
`OutboundMessage` per language with one `Delivery` per recipient (each gets a Reply-To
token of its own). Nothing is sent here; `send.py` drains the deliveries. Never commits.

No mail outgrows `outbound.max_message_bytes` (what the relay accepts): the templates show
at most 150,000 characters of a text (compose.py), and the files a mail carries are chosen
so that, encoded, they fit beside its text and HTML (`size.py`); the others are named.
An author who asked for no automatic answer (`quiet_author`) gets none.
"""
from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import rows
from gateway.config import Settings
from gateway.models import DELIVERY_HELD_BACK, DELIVERY_PENDING, Case, Delivery, OutboundMessage
from gateway.outbound import compose, token
from gateway.outbound import size as mail_size

# Auto-Submitted of the gateway's own answers and of its jobs' mail; a person's answer
# relayed to a customer (an agent's) is HUMAN: it goes out without the header (RFC 3834).
AUTO_REPLIED, AUTO_GENERATED, HUMAN = "auto-replied", "auto-generated", ""
# Who a mail is for, when that bounds it (OutboundMessage.audience).
NOTICE, STRANGER = "notice", "stranger"


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str = ""
    language: str = "fr"


@dataclass(frozen=True)
class StoredFile:
    """A file kept on a case (a row of `attachments`), as the outbox refers to it."""
    id: int
    filename: str
    content_type: str
    size: int
    inline: bool = False

    def mail_bytes(self) -> int:
        return mail_size.file_bytes(self.size, self.filename, self.content_type)


@dataclass(frozen=True)
class MailFile:
    """What a mail says of a file: carried along (`attached`) or only named, too big."""
    id: int
    filename: str
    size: int
    attached: bool
    inline: bool
    cid: str  # the Content-ID an inline image is shown by in the HTML part


def mail_files(files: Sequence[StoredFile], limit: int, domain: str,
               room: int | None = None) -> list[MailFile]:
    """Decide which files one mail carries: in order, as long as their sizes fit `limit`
    and, encoded, `room` bytes when given; a file that does not fit is only named (a later,
    smaller one may still fit)."""
    out, left = [], limit
    for f in files:
        attached = f.size <= left and (room is None or f.mail_bytes() <= room)
        if attached:
            left -= f.size
            room = None if room is None else room - f.mail_bytes()
        out.append(MailFile(f.id, f.filename, f.size, attached, f.inline and attached,
                            f"file{f.id}@{domain}"))
    return out


def new_message_id(settings: Settings) -> str:
    domain = settings.support.mailbox.domain or "localhost"
    return f"<{secrets.token_hex(12)}@{domain}>"


@dataclass
class Outbox:
    """Posts messages for one unit of work (one inbound message or one job run)."""
    session: Session
    settings: Settings
    now: dt.datetime
    answering: str | None = None        # Message-ID of the message being answered
    inbound_id: int | None = None
    author: str | None = None           # never a recipient of what answers it
    quiet_author: bool = False          # the author wants no automatic answer at all
    suppressed: int = 0                 # automatic answers to the author left out for that
    _key: bytes | None = None

    def key(self) -> bytes:
        if self._key is None:
            self._key = token.secret(self.session, self.settings)
        return self._key

    def answers_left(self, address: str) -> bool:
        """Whether `address` may get one more automatic answer this hour (loop protection)."""
        since = self.now - dt.timedelta(hours=1)
        sent = self.session.connection().scalar(  # Core-written rows: no flush needed first
            select(func.count()).select_from(Delivery).join(OutboundMessage)
            .where(Delivery.recipient == address, Delivery.created_at >= since,
                   OutboundMessage.auto_submitted == AUTO_REPLIED))
        return (sent or 0) < self.settings.support.answers_per_hour

    def post(self, kind: str, to: list[Recipient], cc: list[Recipient] = (), *,  # type: ignore[assignment]
             case: Case | None = None, context: dict[str, Any] | None = None,
             auto_submitted: str = AUTO_REPLIED, include_author: bool = False,
             files: Sequence[StoredFile] = (), confirmation: int | None = None,
             audience: str = "") -> list[int]:
        """Compose `kind` for `to` + `cc` and write it to the outbox. The author of the
        message being answered is left out unless `include_author` (acknowledgements).
        `files` travel with the mail as far as `outbound.max_attachment_bytes` and
        `outbound.max_message_bytes` allow; the templates read them as `attachments`
        (MailFile: attached, or named with its size).
        With `confirmation`, each copy's Reply-To carries that confirmation's token.
        `audience` NOTICE marks a mail about someone else's message: a recipient who had their
        share of those in the window gets it later, within one digest (see digest.py)."""
        quiet = self.quiet_author and auto_submitted == AUTO_REPLIED
        to, cc = self._dedupe(to, include_author, quiet), self._dedupe(cc, include_author, quiet)
        cc = [r for r in cc if r.address not in {t.address for t in to}]
        if not to and not cc:
            return []
        if not to:  # the main contact wrote: the distribution list is addressed directly
            to, cc = cc, []
        domain = self.settings.support.mailbox.domain or "localhost"
        carried = mail_files(files, self.settings.outbound.max_attachment_bytes, domain)
        ctx = dict(context or {}, case=case, settings=self.settings)
        groups = _by_language(to + cc)
        rendered = self._render(kind, groups, dict(ctx, attachments=carried))
        room = self._room_for_files(rendered.values(), to + cc)
        if sum(f.mail_bytes() for f, m in zip(files, carried, strict=True) if m.attached) > room:
            # A long text takes room: the files that no longer fit are named, not attached.
            carried = mail_files(files, self.settings.outbound.max_attachment_bytes, domain, room)
            rendered = self._render(kind, groups, dict(ctx, attachments=carried))
        messages = [self._write(kind, rendered[language], to, cc, recipients, case, auto_submitted,
                                confirmation, audience)
                    for language, recipients in groups.items()]
        self._attach(messages, [f.id for f in carried if f.attached])
        return messages

    def _attach(self, messages: list[int], attached: list[int]) -> None:
        if attached:
            rows.add(self.session, rows.ADD_OUTBOUND_FILES,
                     [dict(message_id=m, attachment_id=a) for m in messages for a in attached])

    def _render(self, kind: str, groups: dict[str, list[Recipient]],
                ctx: dict[str, Any]) -> dict[str, compose.Rendered]:
        # The case's subject in each reader's language: [Dossier #N], or [Case #N] in English.
        case, tag = ctx["case"], self.settings.support.case_tag
        return {language: compose.render(self.settings.templates_dir, kind, language, dict(
                    ctx, case_subject=compose.case_subject(tag, language, case.id, case.title) if case else ""))
                for language in groups}

    def _room_for_files(self, rendered: Any, people: list[Recipient]) -> int:
        """The bytes left for files in a mail of `rendered` text to `people`, once encoded."""
        text = max(mail_size.part_bytes(r.text) + mail_size.part_bytes(r.html) + 12 * len(r.subject)
                   for r in rendered)
        used = mail_size.HEADERS + text + mail_size.addresses_bytes((p.name, p.address) for p in people)
        return self.settings.outbound.max_message_bytes - used

    def _dedupe(self, recipients: Any, include_author: bool, quiet: bool) -> list[Recipient]:
        """Each address once, and the author only when included and not asking for quiet."""
        seen: set[str] = set()
        out = []
        author = (self.author or "").lower()
        for r in recipients:
            address = r.address.lower()
            if address == author and (quiet or not include_author):
                self.suppressed += int(include_author and quiet)
            elif address not in seen:
                seen.add(address)
                out.append(r)
        return out

    def _token(self, address: str, case: Case | None, confirmation: int | None) -> str:
        if confirmation is not None:
            return token.make_confirmation(self.key(), confirmation, address)
        return token.make(self.key(), case.id, address) if case else ""

    def _write(self, kind: str, rendered: compose.Rendered, to: list[Recipient], cc: list[Recipient],
               recipients: list[Recipient], case: Case | None, auto_submitted: str,
               confirmation: int | None = None, audience: str = "") -> int:
        # Core inserts (rows.py): the outbox is write-only here, the unit of work would cost more.
        message, each = self._rows(kind, rendered, to, cc, recipients, case, auto_submitted, confirmation, audience)
        message_id = rows.ADD_OUTBOUND.add(self.session, message)
        rows.seen_outbound(self.session, message["message_id"], message_id, case.id if case else None)
        rows.add(self.session, rows.ADD_DELIVERIES, [dict(d, message_id=message_id) for d in each])
        return message_id

    def _rows(self, kind: str, rendered: compose.Rendered, to: list[Recipient], cc: list[Recipient],
              recipients: list[Recipient], case: Case | None, auto_submitted: str,
              confirmation: int | None, audience: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The outbound message's row, and its deliveries' (without the message's id)."""
        references = [r for r in dict.fromkeys([case.thread_id if case else None, self.answering]) if r]
        message = dict(
            created_at=self.now, kind=kind, case_id=case.id if case else None, inbound_id=self.inbound_id,
            message_id=new_message_id(self.settings), in_reply_to=self.answering or (case.thread_id if case else None),
            references=" ".join(references) or None, auto_submitted=auto_submitted,
            to_header=[[r.name, r.address] for r in to], cc_header=[[r.name, r.address] for r in cc],
            subject=rendered.subject, text=rendered.text, html=rendered.html, audience=audience,
            author=(self.author or "")[:320] or None)
        deliveries = []
        for r in recipients:
            # The author's own copy (an acknowledgement) always goes: only others' are capped.
            capped = audience == NOTICE and r.address != (self.author or "").lower()
            held = self._held_until(r.address, case) if capped else None
            deliveries.append(dict(
                recipient=r.address, created_at=self.now, next_attempt_at=held or self.now,
                token=self._token(r.address, case, confirmation),
                status=DELIVERY_HELD_BACK if held else DELIVERY_PENDING, attempts=0))
        return message, deliveries

    def _held_until(self, address: str, case: Case | None) -> dt.datetime | None:
        """When `address` already had its share of notices in the window about this case or
        this author's messages: the end of that window (a loop or a flood is bounded there)."""
        if not self.author and case is None:
            return None
        window = dt.timedelta(minutes=self.settings.support.notice_window_minutes)
        count, first = rows.NOTICES[bool(self.author), case is not None].first(self.session, dict(
            recipient=address, since=self.now - window, audience=NOTICE, author=self.author,
            case_id=case.id if case else None)) or (0, None)  # an aggregate: always one row
        if count < self.settings.support.notices_per_window:
            return None
        end: dt.datetime = max(first + window, self.now)
        return end

    def strangers_answered(self) -> int:
        """Answers to strangers in the last hour, all addresses together."""
        return self.session.connection().scalar(
            select(func.count()).select_from(Delivery).join(OutboundMessage)
            .where(OutboundMessage.audience == STRANGER,
                   OutboundMessage.created_at >= self.now - dt.timedelta(hours=1))) or 0


def _by_language(recipients: list[Recipient]) -> dict[str, list[Recipient]]:
    """One copy per language: recipients grouped by the language their mail is written in."""
    groups: dict[str, list[Recipient]] = {}
    for r in recipients:
        groups.setdefault(r.language if r.language in compose.LANGUAGES else "fr", []).append(r)
    return groups
