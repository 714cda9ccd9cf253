"""Parse a raw message (bytes as received) into a typed `ParsedMail`.

Pure: no I/O, no configuration, no database; and `parse` never raises, whatever
the bytes. Uses the standard library's compat32 parser, the fastest one, and
decodes headers itself, because mail in the wild carries raw 8-bit headers,
unknown or wrong charsets and broken MIME structures.

One idea per module:

- `mail`: the `ParsedMail` and `Attachment` values parsing gives;
- `bounded`: reading the raw message within bounds (lines, header values);
- `headers`: header field values and what they say (subject, addresses, ids, date);
- `charsets`: decoding bytes and RFC 2047 encoded words into text;
- `body`: the MIME walk, texts and alternatives;
- `html_text`: HTML bodies made plain text;
- `files`: the parts kept as files, with safe names;
- `reports`: delivery reports, the bounced ids and the failed recipients;
- `reply`: the author's own words, without quoted history and signature.

Bounded: whatever the bytes, parsing costs bounded time and memory; each module says
its limits. Every value is bounded the way `gateway.bounds` says, so it fits the
database. Whatever is cut is said in `ParsedMail.notes`, which the pipeline adds to the
outcome's reasons; the stored raw message keeps all.
"""
from __future__ import annotations

from email import errors
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import BytesParser

from gateway import bounds
from gateway import raw as raw_bytes
from gateway.pipeline.parse import bounded, headers, reports
from gateway.pipeline.parse.body import Body, read_body
from gateway.pipeline.parse.charsets import decode_words
from gateway.pipeline.parse.mail import Attachment, ParsedMail
from gateway.pipeline.parse.reply import strip_reply

__all__ = ["Attachment", "ParsedMail", "parse", "strip_reply"]

_LIST_FIELDS = ("list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive")
_CHUNK = 1 << 16
_AUTOREPLY_FIELDS = ("x-autoreply", "x-autorespond", "x-autoreply-from")


def parse(raw: bytes) -> ParsedMail:
    """Parse raw message bytes. Never raises: hopeless input gives empty fields.

    Input without any header (binary files such as an Outlook .msg, empty
    bytes) is hopeless. When the body cannot be read (absurd nesting, a bug),
    the header fields are still returned. The Message-ID is the one intake keys the
    message with (`gateway.raw.message_id`), hopeless input or not.
    """
    try:
        message_id = raw_bytes.message_id(bytes(raw))
        # A UTF-8 byte order mark would hide the first header line.
        raw, notes = bounded.trim(bytes(raw).removeprefix(b"\xef\xbb\xbf"))
        policy = bounded.BoundedPolicy(cuts=[])
        try:
            message = _message(raw, policy)
        except RecursionError:  # thousands of nested parts: the headers are still readable
            policy = bounded.BoundedPolicy(cuts=[])
            message = BytesParser(policy=policy).parsebytes(raw, headersonly=True)
            notes.append("MIME parts nested too deeply to be read; the raw message keeps them")
            return _parsed(message, message_id, Body(defects=1, notes=notes), policy)
        if not message.keys():
            return ParsedMail(message_id=message_id, defects=len(message.defects))
        try:
            body = read_body(message, Body(notes=notes))
        except Exception:  # keep the headers whatever happens in the body
            body = Body(defects=1, notes=notes)
        return _parsed(message, message_id, body, policy)
    except Exception:  # the contract: bytes of any kind must give a value
        return ParsedMail()


def _message(raw: bytes, policy: bounded.BoundedPolicy) -> Message:
    """The parsed message. A message of one part (no multipart, no message/*) has its
    header parsed alone and its body set whole: the parser would go over it line by line
    (seconds for millions of short lines) only to join the lines again."""
    header_end, body = raw_bytes.header_end(raw)
    if body < len(raw):
        head = BytesParser(policy=policy).parsebytes(raw[:body], headersonly=True)
        if head.get_content_maintype() not in ("multipart", "message") and not any(
                isinstance(d, errors.MissingHeaderBodySeparatorDefect) for d in head.defects):
            head.set_payload(raw[body:].decode("ascii", "surrogateescape"))
            return head
        if policy.cuts:  # the whole message is parsed again, its header with it
            policy.cuts.clear()
    return _feed(raw, policy)


def _feed(raw: bytes, policy: bounded.BoundedPolicy) -> Message:
    """`email.message_from_bytes`, fed a chunk at a time: it would decode the whole message
    into one string, and read it through a StringIO holding four bytes per character (a
    25 MB message cost 150 MB there). The parser reads lines across chunks alike."""
    parser = BytesFeedParser(policy=policy)
    view = memoryview(raw)
    for start in range(0, len(raw), _CHUNK):
        parser.feed(bytes(view[start:start + _CHUNK]))
    return parser.close()


def _parsed(message: Message, message_id: str | None, body: Body, policy: bounded.BoundedPolicy) -> ParsedMail:
    """Build the ParsedMail of a message from its headers, its own id and its walked body."""
    fields = headers.Fields(message)
    cuts = policy.cuts or []
    notes = bounded.cut_notes(cuts, skip=frozenset({"subject"})) + body.notes
    text = "\n\n".join(part for part in body.texts if part)
    from_name, from_addr = headers.sender(fields.all("from"))
    return ParsedMail(
        message_id=message_id,
        in_reply_to=headers.threading_ids(fields.all("in-reply-to"), "In-Reply-To", notes),
        references=headers.threading_ids(fields.all("references"), "References", notes),
        subject=headers.subject(fields.first("subject"), cuts, notes),
        from_addr=from_addr,
        from_name=from_name,
        reply_to=headers.addresses(fields.all("reply-to"), "Reply-To", notes),
        to=headers.addresses(fields.all("to"), "To", notes),
        cc=headers.addresses(fields.all("cc"), "Cc", notes),
        date=headers.date(fields.first("date")),
        text=text,
        new_text=strip_reply(text),
        attachments=tuple(body.attachments),
        auto_submitted=fields.first("auto-submitted").strip().lower(),
        precedence=", ".join(v.strip().lower() for v in fields.all("precedence")),
        has_autoreply_header=any(fields.has(name) for name in _AUTOREPLY_FIELDS),
        list_id=headers.collapse(decode_words(fields.first("list-id")))[: bounds.NAME],
        list_fields=tuple(name for name in _LIST_FIELDS if fields.has(name)),
        auto_response_suppress=", ".join(v.strip().lower() for v in fields.all("x-auto-response-suppress")),
        loops=tuple(v.strip().strip("<>").lower() for v in fields.all("x-loop")),
        return_path=headers.return_path(fields.all("return-path")),
        is_report=message.get_content_type() == "multipart/report",
        report_type=reports.report_type(message),
        bounced_message_ids=tuple(body.bounced),
        failed_recipients=tuple(body.failed),
        authentication_results=tuple(v.strip() for v in fields.all("authentication-results")),
        content_language=headers.language(fields.first("content-language") or fields.first("accept-language")),
        defects=len(message.defects) + body.defects,
        notes=tuple(notes),
    )
