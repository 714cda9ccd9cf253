"""What parsing gives: a `ParsedMail`, and the `Attachment`s it carries.

Plain frozen values with defaults, so that hopeless input still gives a value (with
empty fields) and the stages after parsing never meet a missing attribute.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file carried by a message, with a name that is safe to store."""

    filename: str
    content_type: str
    data: bytes
    inline: bool = False  # an image shown in the body of the message, not a file beside it


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """What the pipeline needs to know about one message; see `gateway.pipeline.parse.parse`."""

    message_id: str | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    subject: str = ""
    from_addr: str | None = None
    from_name: str = ""
    reply_to: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    date: datetime | None = None
    text: str = ""
    new_text: str = ""
    attachments: tuple[Attachment, ...] = ()
    auto_submitted: str = ""
    precedence: str = ""  # every Precedence field, lowercased, ", " between them
    has_autoreply_header: bool = False
    list_id: str = ""
    list_fields: tuple[str, ...] = ()  # the RFC 2369 List-* fields present (lowercase names)
    auto_response_suppress: str = ""  # every X-Auto-Response-Suppress field, lowercased
    loops: tuple[str, ...] = ()  # the addresses of every X-Loop field, lowercased
    return_path: str | None = None
    is_report: bool = False
    report_type: str = ""
    bounced_message_ids: tuple[str, ...] = ()
    failed_recipients: tuple[str, ...] = ()
    authentication_results: tuple[str, ...] = ()
    content_language: str = ""
    defects: int = 0
    notes: tuple[str, ...] = ()  # what was read only in part ("subject of ... characters: ...")
