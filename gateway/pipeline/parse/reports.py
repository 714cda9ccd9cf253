"""Delivery reports (RFC 3464 and the like): which message bounced, and for whom.

A report is a multipart/report. Its returned message (or only that message's header)
names the id of the message that bounced; its message/delivery-status part lists the
recipients, and those whose Action is "failed" did not get it.
"""
from __future__ import annotations

import email
from email.message import Message

from gateway import bounds
from gateway.pipeline.parse.bounded import BoundedPolicy
from gateway.pipeline.parse.files import FORWARDED_TYPES
from gateway.pipeline.parse.headers import first_field

HEADERS_TYPES = frozenset({"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"})


def report_type(message: Message) -> str:
    """The report-type parameter of a multipart/report, lowercased; "" for other messages."""
    if message.get_content_type() != "multipart/report":
        return ""
    value = message.get_param("report-type", "")
    return (value if isinstance(value, str) else "").strip().lower()


def bounce_facts(part: Message, ctype: str, in_report: bool, data: bytes) -> tuple[list[str], list[str]]:
    """(ids of the bounced messages, failed recipients) a part kept as a file tells.

    `data` is the part's bytes; `in_report` says whether it sits in a multipart/report.
    A returned message says something only within a report, a delivery status anywhere.
    """
    if not part.is_multipart():  # a returned header block the parser left as bytes
        if in_report and ctype in HEADERS_TYPES:
            headers = email.message_from_bytes(data, policy=BoundedPolicy())
            return _id_of(headers), []
        return [], []
    inner = [message for message in part.get_payload() if isinstance(message, Message)]
    if ctype == "message/delivery-status":
        return [], failed_recipients(inner)
    if in_report and inner and ctype in FORWARDED_TYPES | HEADERS_TYPES:
        return _id_of(inner[0]), []
    return [], []


def _id_of(returned: Message) -> list[str]:
    """The Message-ID of a returned message, as a list of none or one."""
    return list(filter(None, [bounds.message_id(first_field(returned, "message-id"))]))


def failed_recipients(blocks: list[Message]) -> list[str]:
    """Final-Recipient of each per-recipient block whose Action is "failed"."""
    failed = []
    for block in blocks:
        action = str(block.get("action", "")).strip().lower()
        recipient = str(block.get("final-recipient", "")).rsplit(";", 1)[-1]
        address = bounds.address(recipient.strip().strip("<>").strip())
        if action.startswith("failed") and address:
            failed.append(address)
    return failed
