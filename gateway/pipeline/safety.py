"""Safety checks: automatic mail is never answered, loops are cut, bounces mark addresses.

Pure predicates on the parsed message, plus `record_bounce`, which marks the contacts
whose address a delivery report says is failing. Never sends mail; never commits.

Two kinds of signal. Mail that says it is automatic or sent to a list (`automatic_reason`:
Auto-Submitted, any Precedence field of bulk, junk, list or auto_reply, X-Autoreply, a
List-Id or any RFC 2369 List-* field, an empty return path, a daemon sender, a report) is
ignored entirely, as other helpdesks do: no case, no answer. Mail that only asks for no
automatic answer (`no_answer_wanted`: X-Auto-Response-Suppress with All, AutoReply or OOF,
which Exchange and some real senders set) is handled like any other (a case is opened or
appended, agents are told), but the gateway's automatic answers to its sender
(acknowledgements, refusals, confirmations) are not sent.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import accounts
from gateway.config import Settings
from gateway.models import OutboundMessage
from gateway.pipeline.parse import ParsedMail

_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
_AUTOMATIC_PRECEDENCE = ("bulk", "junk", "list", "auto_reply")
_NO_ANSWER = frozenset({"all", "autoreply", "oof"})


def automatic_reason(parsed: ParsedMail, envelope_from: str | None) -> str | None:
    """Why this message is automatic and must get no answer, or None for a person's mail."""
    if parsed.is_report:
        return f"delivery or disposition report ({parsed.report_type or 'multipart/report'})"
    if parsed.auto_submitted and parsed.auto_submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {parsed.auto_submitted}"
    precedence = next((p for p in _values(parsed.precedence) if p in _AUTOMATIC_PRECEDENCE), None)
    if precedence is not None:
        return f"Precedence: {precedence}"
    if parsed.has_autoreply_header:
        return "auto-reply header"
    if envelope_from == "" or parsed.return_path == "":
        return "empty return path"
    local = (parsed.from_addr or "").partition("@")[0]
    if local in _DAEMONS:
        return f"sender {parsed.from_addr}"
    if parsed.list_id or parsed.list_fields:
        return f"mailing-list message ({'List-Id' if parsed.list_id else parsed.list_fields[0]})"
    return None


def no_answer_wanted(parsed: ParsedMail) -> str | None:
    """Why the sender wants no automatic answer (X-Auto-Response-Suppress), or None."""
    wanted = [v for v in _values(parsed.auto_response_suppress) if v in _NO_ANSWER]
    return f"X-Auto-Response-Suppress: {', '.join(wanted)}" if wanted else None


def _values(field: str) -> list[str]:
    """The values of a comma-separated field (several fields arrive joined by commas)."""
    return [v.strip() for v in field.lower().split(",") if v.strip()]


def is_loop(parsed: ParsedMail, settings: Settings) -> bool:
    """Mail that claims to come from the support address itself, or that carries the
    gateway's own X-Loop: one of its mails coming back through a forwarder."""
    mailbox = settings.support.mailbox
    return mailbox.matches(parsed.from_addr or "") or str(mailbox) in parsed.loops


def record_bounce(session: Session, parsed: ParsedMail, now: dt.datetime) -> list[str]:
    """Mark as failing the contacts a delivery failure names, when the report is about a
    message the gateway sent. Returns the addresses marked."""
    if not parsed.bounced_message_ids or not parsed.failed_recipients:
        return []
    ours = session.scalar(select(OutboundMessage.id).where(
        OutboundMessage.message_id.in_(parsed.bounced_message_ids)).limit(1))
    if ours is None:
        return []
    addresses = sorted(set(parsed.failed_recipients))
    accounts.mark_failing(session, addresses, now)
    return addresses
