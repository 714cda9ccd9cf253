"""Safety checks: automatic mail is never answered, loops are cut, bounces mark addresses.

Pure predicates on the parsed message, plus `record_bounce`, which marks the contacts
whose address a delivery report says is failing. Never sends mail; never commits.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.models import Contact, OutboundMessage
from gateway.outbound.token import token_of
from gateway.pipeline.parse import ParsedMail

_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")


def automatic_reason(parsed: ParsedMail, envelope_from: str | None) -> str | None:
    """Why this message is automatic and must get no answer, or None for a person's mail."""
    if parsed.is_report:
        return f"delivery or disposition report ({parsed.report_type or 'multipart/report'})"
    if parsed.auto_submitted and parsed.auto_submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {parsed.auto_submitted}"
    if parsed.precedence in ("bulk", "junk", "list"):
        return f"Precedence: {parsed.precedence}"
    if parsed.has_autoreply_header:
        return "auto-reply header"
    if envelope_from == "" or parsed.return_path == "":
        return "empty return path"
    local = (parsed.from_addr or "").partition("@")[0]
    if local in _DAEMONS:
        return f"sender {parsed.from_addr}"
    if parsed.list_id:
        return "mailing-list message"
    return None


def is_loop(parsed: ParsedMail, settings: Settings) -> bool:
    """Mail that claims to come from the support address itself, or that carries the
    gateway's own X-Loop: one of its mails coming back through a forwarder."""
    sender = parsed.from_addr or ""
    support = settings.support.address.lower()
    return sender == support or token_of(sender, support) is not None or support in parsed.loops


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
    session.execute(update(Contact).where(Contact.email.in_(addresses), Contact.failing_since.is_(None))
                    .values(failing_since=now))
    return addresses
