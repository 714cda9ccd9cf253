"""Parse a raw message (bytes as received) into a typed `ParsedMail`.

Pure: no I/O, no configuration, no database; and `parse` never raises, whatever
the bytes. Uses the standard library's compat32 parser, the fastest one, and
decodes headers itself, because mail in the wild carries raw 8-bit headers,
unknown or wrong charsets and broken MIME structures.

Bounded: whatever the bytes, parsing costs bounded time and memory. The message is
read within the limits of `gateway.pipeline.bounded` (lines, header values), and
then at most 500 MIME parts, 60 levels deep, 300,000 characters (6,000 tags) of
HTML, a 1,000-character subject, 100 addresses per field and 100
message ids per threading field. Every value is bounded the way `gateway.bounds`
says, so it fits the database. Whatever is cut is said in `ParsedMail.notes`, which
the pipeline adds to the outcome's reasons; the stored raw message keeps all.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import errors
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from gateway import bounds
from gateway import raw as raw_bytes
from gateway.bounds import cut_note
from gateway.pipeline import bounded
from gateway.pipeline.html_text import html_to_text
from gateway.pipeline.reply import strip_reply

__all__ = ["Attachment", "ParsedMail", "parse", "strip_reply"]

# Parsing with compat32 is four times faster than with email.policy.default on
# our corpus (0.4 against 1.6 ms a message); headers are decoded here instead.
_POLICY = email.policy.compat32


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file carried by a message, with a name that is safe to store."""

    filename: str
    content_type: str
    data: bytes
    inline: bool = False  # an image shown in the body of the message, not a file beside it


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """What the pipeline needs to know about one message; see `parse`."""

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


def parse(raw: bytes) -> ParsedMail:
    """Parse raw message bytes. Never raises: hopeless input gives empty fields.

    Input without any header (binary files such as an Outlook .msg, empty
    bytes) is hopeless. When the body cannot be read (absurd nesting, a bug),
    the header fields are still returned.
    """
    try:
        # A UTF-8 byte order mark would hide the first header line.
        raw, notes = bounded.trim(bytes(raw).removeprefix(b"\xef\xbb\xbf"))
        policy = bounded.BoundedPolicy(cuts=[])
        try:
            message = _message(raw, policy)
        except RecursionError:  # thousands of nested parts: the headers are still readable
            policy = bounded.BoundedPolicy(cuts=[])
            message = BytesParser(policy=policy).parsebytes(raw, headersonly=True)
            notes.append("MIME parts nested too deeply to be read; the raw message keeps them")
            return _parsed(message, _Body(defects=1, notes=notes), policy)
        if not message.keys():
            return ParsedMail(defects=len(message.defects))
        try:
            body = _read_body(message, _Body(notes=notes))
        except Exception:  # keep the headers whatever happens in the body
            body = _Body(defects=1, notes=notes)
        return _parsed(message, body, policy)
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
        del policy.cuts[:]  # the whole message is parsed again, its header with it
    return email.message_from_bytes(raw, policy=policy)


_LIST_FIELDS = ("list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive")


def _parsed(message: Message, body: _Body, policy: bounded.BoundedPolicy) -> ParsedMail:
    """Build the ParsedMail of a message from its headers and its walked body."""
    fields = _Fields(message)
    notes = bounded.cut_notes(policy.cuts or [], skip=frozenset({"subject"})) + body.notes
    text = "\n\n".join(part for part in body.texts if part)
    from_name, from_addr = _sender(fields.all("from"))
    return ParsedMail(
        message_id=bounds.message_id(fields.first("message-id")),
        in_reply_to=_ids(fields.all("in-reply-to"), "In-Reply-To", notes),
        references=_ids(fields.all("references"), "References", notes),
        subject=_subject(fields.first("subject"), policy.cuts or [], notes),
        from_addr=from_addr,
        from_name=from_name,
        reply_to=_addresses(fields.all("reply-to"), "Reply-To", notes),
        to=_addresses(fields.all("to"), "To", notes),
        cc=_addresses(fields.all("cc"), "Cc", notes),
        date=_date(fields.first("date")),
        text=text,
        new_text=strip_reply(text),
        attachments=tuple(body.attachments),
        auto_submitted=fields.first("auto-submitted").strip().lower(),
        precedence=", ".join(v.strip().lower() for v in fields.all("precedence")),
        has_autoreply_header=any(
            fields.has(name) for name in ("x-autoreply", "x-autorespond", "x-autoreply-from")
        ),
        list_id=_collapse(_decode_words(fields.first("list-id")))[:bounds.NAME],
        list_fields=tuple(name for name in _LIST_FIELDS if fields.has(name)),
        auto_response_suppress=", ".join(v.strip().lower() for v in fields.all("x-auto-response-suppress")),
        loops=tuple(v.strip().strip("<>").lower() for v in fields.all("x-loop")),
        return_path=_return_path(fields.all("return-path")),
        is_report=message.get_content_type() == "multipart/report",
        report_type=_report_type(message),
        bounced_message_ids=tuple(body.bounced),
        failed_recipients=tuple(body.failed),
        authentication_results=tuple(v.strip() for v in fields.all("authentication-results")),
        content_language=_language(fields.first("content-language") or fields.first("accept-language")),
        defects=len(message.defects) + body.defects,
        notes=tuple(notes),
    )


# --- Header values ---------------------------------------------------------

class _Fields:
    """The top-level header fields by lowercase name, read on demand: unfolded, 8-bit
    bytes decoded (a message may carry thousands of fields the gateway never reads)."""

    def __init__(self, message: Message) -> None:
        self._raw: dict[str, list[str]] = {}
        for name, value in message.raw_items():
            self._raw.setdefault(name.strip().lower(), []).append(value if isinstance(value, str) else str(value))

    def has(self, name: str) -> bool:
        return name in self._raw

    def all(self, name: str) -> list[str]:
        return [_unfold(_unsurrogate(value)) for value in self._raw.get(name, [])]

    def first(self, name: str) -> str:
        values = self._raw.get(name)
        return _unfold(_unsurrogate(values[0])) if values else ""


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
_ADDR_SPEC = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*@[\w-]+(?:\.[\w-]+)*")


def _unsurrogate(value: str) -> str:
    """Turn raw 8-bit header bytes, which the parser keeps as surrogates, into text."""
    if value.isascii():
        return value
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # already real text
        return value
    return _decode_bytes(raw, None)


def _unfold(value: str) -> str:
    return _FOLD.sub("", value).replace("\r", "").replace("\n", " ")


def _collapse(value: str) -> str:
    return _SPACES.sub(" ", _CONTROL.sub("", value)).strip()


def _decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; text that is not encoded is kept as it is."""
    if "=?" not in value:
        return value
    try:
        chunks = decode_header(value)
    except Exception:  # bad base64 in an encoded word: show the header as written
        return value
    # decode_header gives unencoded runs back as raw-unicode-escape bytes.
    return "".join(
        chunk if isinstance(chunk, str) else _decode_bytes(chunk, charset or "raw-unicode-escape")
        for chunk, charset in chunks
    )


_MAX_ADDRESSES = 100  # per address field: a Cc of thousands would cost a look-up each
_MAX_IDS = 100  # per threading field; the newest (last) are kept
_SUBJECT_READ = 16 * bounds.SUBJECT  # raw characters decoded: encoded words take up to 16 each


def _subject(written: str, cuts: list[tuple[str, int, int]], notes: list[str]) -> str:
    """The decoded subject, at most `bounds.SUBJECT` characters."""
    subject = _collapse(_decode_words(written[:_SUBJECT_READ]))
    cut_before = next((n for name, n, _ in cuts if name.lower() == "subject"), 0)
    if cut_before or len(written) > _SUBJECT_READ:  # too long to decode whole: its written length
        notes.append(cut_note("subject", max(cut_before, len(written)), bounds.SUBJECT))
    elif len(subject) > bounds.SUBJECT:
        notes.append(cut_note("subject", len(subject), bounds.SUBJECT))
    return subject[: bounds.SUBJECT]


def _ids(values: list[str], name: str, notes: list[str]) -> tuple[str, ...]:
    """The message ids of a threading field, the last 100 when there are more."""
    found = [i for value in values for i in bounds.message_ids(value)]
    if len(found) > _MAX_IDS:
        notes.append(cut_note(name, len(found), _MAX_IDS, "message ids").replace("the first", "the last", 1))
    return tuple(found[-_MAX_IDS:])


def _valid_address(address: str, written: str) -> bool:
    # getaddresses() glues "jean @x.example" into "jean@x.example": an address
    # that does not appear as written was not valid.
    return bounds.address(address) is not None and bool(_ADDR_SPEC.fullmatch(address)) and address in written


def _sender(values: list[str]) -> tuple[str, str | None]:
    """(display name, address) of the From field; the address only if it is exactly one valid one."""
    written = ", ".join(values)
    pairs = [(name, addr) for name, addr in _pairs(written) if name or addr]
    if not pairs:
        return "", None
    name, address = pairs[0]
    name = _collapse(_decode_words(name[: 16 * bounds.NAME]))[: bounds.NAME]
    if len(pairs) != 1 or not _valid_address(address, written):
        return name, None
    return name, address.lower()


def _addresses(values: list[str], name: str, notes: list[str]) -> tuple[str, ...]:
    """The valid addresses of an address-list field, lowercased; the first 100."""
    written = ", ".join(values)
    found = [addr.lower() for _, addr in _pairs(written) if _valid_address(addr, written)]
    if len(found) > _MAX_ADDRESSES:
        notes.append(cut_note(name, len(found), _MAX_ADDRESSES, "addresses"))
    return tuple(found[:_MAX_ADDRESSES])


def _pairs(written: str) -> list[tuple[str, str]]:
    try:
        return getaddresses([written])
    except Exception:  # its recursive parser gives up on fields of thousands of words
        return []


def _date(value: str) -> datetime | None:
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # "-0000" means "time zone unknown"; the time is then UTC by convention.
    return date if date.tzinfo else date.replace(tzinfo=timezone.utc)


def _return_path(values: list[str]) -> str | None:
    """The address in the first Return-Path, "" for the null sender "<>"."""
    if not values:
        return None
    match = re.search(r"<([^<>]*)>", values[0])
    return (match.group(1) if match else values[0]).strip()


def _language(value: str) -> str:
    return value.split(",")[0].split(";")[0].strip().lower()


def _report_type(message: Message) -> str:
    if message.get_content_type() != "multipart/report":
        return ""
    value = message.get_param("report-type", "")
    return (value if isinstance(value, str) else "").strip().lower()


# --- Text decoding ---------------------------------------------------------

def _cp1252_for_bad_bytes(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: read the bytes that are not UTF-8 as windows-1252."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("cp1252", "replace"), error.end


codecs.register_error("gateway.cp1252", _cp1252_for_bad_bytes)

# Charsets that are labels more than facts: Outlook writes iso-8859-1 for
# windows-1252 text, and "us-ascii" often covers UTF-8 or latin-1 bytes. For
# them (and for unknown ones) UTF-8 comes first: latin-1 text is almost never
# valid UTF-8, while UTF-8 text read as latin-1 is always mojibake.
_WESTERN = frozenset({"ascii", "iso8859-1", "cp1252"})


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text bytes with their declared charset; never raises.

    Unknown, absent or failing charsets fall back to UTF-8, reading the bytes
    that are not UTF-8 as windows-1252.
    """
    codec = _codec(charset)
    if codec is not None and codec not in _WESTERN:
        try:
            return data.decode(codec)
        except (UnicodeError, LookupError, ValueError):
            pass
    return data.decode("utf-8", "gateway.cp1252")


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        return codecs.lookup(charset.strip().strip('"')).name
    except (LookupError, ValueError, TypeError):
        return None


def _clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    return _CONTROL.sub("", text).strip()


# --- Body ------------------------------------------------------------------

_BODY_TYPES = frozenset({"text/plain", "text/html"})
_FORWARDED_TYPES = frozenset({"message/rfc822", "message/global"})
_HEADERS_TYPES = frozenset({"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"})
_MAX_PARTS = 500
_MAX_DEPTH = 60
_MAX_HTML = 300_000  # characters of HTML converted, all parts together
_MAX_HTML_TAGS = 6_000  # and tags and entities ("<", "&"): html2text spends up to 70 µs on each
_MAX_FILENAME = 150
_UNSAFE_NAME_CHARS = re.compile(r'[<>:"|?*]')
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


@dataclass(slots=True)
class _Body:
    """What the walk over the MIME tree collects, and what it has left to read."""

    texts: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    bounced: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    defects: int = 0
    notes: list[str] = field(default_factory=list)
    html_left: int = _MAX_HTML
    tags_left: int = _MAX_HTML_TAGS


def _read_body(message: Message, body: _Body) -> _Body:
    """Walk the MIME tree depth first, in document order, without recursion.

    Each entry says whether its text is wanted (not a losing alternative) and
    whether it sits inside a multipart/report. Reads at most `_MAX_PARTS` parts
    and `_MAX_DEPTH` levels, and says so in `body.notes` when there were more.
    """
    pending: list[tuple[Message, bool, bool, int]] = [(message, True, False, 0)]
    seen, too_deep = 0, False
    while pending:
        if seen == _MAX_PARTS:
            body.notes.append(cut_note("message", _count_parts(message), _MAX_PARTS, "MIME parts"))
            break
        part, wants_text, in_report, depth = pending.pop()
        seen += 1
        if part is not message:
            body.defects += len(part.defects)
        ctype = part.get_content_type()
        # get_payload() without decode=True can raise on 8-bit text with an odd
        # charset parameter; is_multipart() says whether the payload is a tree.
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            children = [child for child in part.get_payload() if isinstance(child, Message)]
            chosen = _preferred(children) if ctype == "multipart/alternative" else None
            in_report = in_report or ctype == "multipart/report"
            too_deep = too_deep or (depth >= _MAX_DEPTH and bool(children))
            if depth < _MAX_DEPTH:
                for child in reversed(children):
                    keep = wants_text and (chosen is None or child is chosen)
                    pending.append((child, keep, in_report, depth + 1))
        elif _is_text(part, ctype):
            if wants_text:
                body.texts.append(_part_text(part, ctype, body))
        else:
            _add_attachment(part, ctype, in_report, body)
    if too_deep:
        body.notes.append(f"MIME parts nested deeper than {_MAX_DEPTH} levels: not read; the raw message keeps them")
    return body


def _count_parts(message: Message) -> int:
    """How many MIME parts a message has, for the note that says how many were read."""
    count, pending = 0, [message]
    while pending:
        part = pending.pop()
        count += 1
        if part.is_multipart():
            pending.extend(child for child in part.get_payload() if isinstance(child, Message))
    return count


def _preferred(children: list[Message]) -> Message | None:
    """The alternative to read: plain text with something in it, else HTML, else the first."""
    for wanted in ("text/plain", "text/html"):
        for child in children:
            if child.get_content_type() == wanted and _has_content(child):
                return child
    return children[0] if children else None


def _has_content(part: Message) -> bool:
    data = part.get_payload(decode=True)
    return isinstance(data, bytes) and bool(data.strip())


def _is_text(part: Message, ctype: str) -> bool:
    """True for body text: plain or HTML not sent as an attachment.

    A multipart whose boundary was never found arrives as one string; shown as
    plain text, as mail clients do.
    """
    if part.get_content_disposition() == "attachment":
        return False
    return ctype in _BODY_TYPES or (not part.is_multipart() and part.get_content_maintype() == "multipart")


def _part_text(part: Message, ctype: str, body: _Body) -> str:
    """The text of a part; an HTML part within what is left of the HTML budget."""
    data = part.get_payload(decode=True)
    text = _decode_bytes(data if isinstance(data, bytes) else b"", _charset(part))
    if ctype == "text/html":
        text = _within(text, _tags_end(text, body.html_left, body.tags_left), "HTML part", body)
        body.html_left -= len(text)
        body.tags_left -= text.count("<") + text.count("&")
        text = html_to_text(text) if text else ""
    return _clean_text(text)


def _tags_end(markup: str, chars: int, tags: int) -> int:
    """How much of `markup` to read: at most `chars` characters and `tags` tags and
    entities (each "<" and "&" counts)."""
    if markup.count("<", 0, chars) + markup.count("&", 0, chars) <= tags:
        return chars
    lt, amp = markup.find("<", 0, chars), markup.find("&", 0, chars)
    for _ in range(max(tags, 0)):  # each search starts where the last one of its kind ended
        if lt >= 0 and (amp < 0 or lt < amp):
            lt = markup.find("<", lt + 1, chars)
        else:
            amp = markup.find("&", amp + 1, chars)
    return min(p for p in (lt, amp, chars) if p >= 0)


def _within(text: str, left: int, what: str, body: _Body) -> str:
    """`text`, or its first `left` characters with a note saying so."""
    if len(text) <= left:
        return text
    body.notes.append(cut_note(what, len(text), max(left, 0)))
    return text[: max(left, 0)]


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:  # a charset parameter no codec lookup accepts, e.g. with a NUL
        return None


def _add_attachment(part: Message, ctype: str, in_report: bool, body: _Body) -> None:
    """Keep a part as a file; the parts of a report also feed the bounce fields."""
    if part.is_multipart():  # message/*: the parser made a tree of it
        inner = [message for message in part.get_payload() if isinstance(message, Message)]
        data = b"\n".join(_message_bytes(message) for message in inner)
        name = _filename(part)
        if ctype in _FORWARDED_TYPES and inner:
            subject = _collapse(_decode_words(_first_field(inner[0], "subject")))
            name = subject.replace("/", "_").replace("\\", "_") + ".eml" if subject else name
        if ctype == "message/delivery-status":
            body.failed.extend(_failed_recipients(inner))
        elif in_report and inner and ctype in _FORWARDED_TYPES | _HEADERS_TYPES:
            body.bounced.extend(filter(None, [bounds.message_id(_first_field(inner[0], "message-id"))]))
    else:
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
        name = _filename(part)
        if in_report and ctype in _HEADERS_TYPES:
            headers = email.message_from_bytes(data, policy=bounded.BoundedPolicy())
            body.bounced.extend(filter(None, [bounds.message_id(_first_field(headers, "message-id"))]))
    if data or name:
        index = len(body.attachments) + 1
        safe_type = ctype if _CONTENT_TYPE.fullmatch(ctype) else "application/octet-stream"
        body.attachments.append(Attachment(_safe_filename(name, ctype, index), safe_type, data,
                                           _is_inline_image(part, ctype)))


def _is_inline_image(part: Message, ctype: str) -> bool:
    """An image the sender's mail client showed within the text (inline, or referred to by
    a Content-ID from the HTML) rather than as a file beside it."""
    if not ctype.startswith("image/") or part.get_content_disposition() == "attachment":
        return False
    return part.get_content_disposition() == "inline" or part.get("content-id") is not None


def _first_field(message: Message, name: str) -> str:
    """The first `name` field of a nested message, unfolded, 8-bit bytes decoded."""
    for key, value in message.raw_items():
        if key.strip().lower() == name:
            return _unfold(_unsurrogate(str(value)))
    return ""


def _failed_recipients(blocks: list[Message]) -> list[str]:
    """Final-Recipient of each per-recipient block whose Action is "failed"."""
    failed = []
    for block in blocks:
        action = str(block.get("action", "")).strip().lower()
        recipient = str(block.get("final-recipient", "")).rsplit(";", 1)[-1]
        recipient = bounds.address(recipient.strip().strip("<>").strip())
        if action.startswith("failed") and recipient:
            failed.append(recipient)
    return failed


def _message_bytes(message: Message) -> bytes:
    """A nested message as bytes (the parser keeps it as a tree)."""
    try:
        return message.as_bytes(policy=_POLICY)
    except Exception:  # a tree the generator cannot write back; the stored raw message has it
        return b""


def _filename(part: Message) -> str:
    """The decoded file name of a part (RFC 2231, RFC 2047 or raw 8-bit), or ""."""
    try:
        name = _with_decoded_type_headers(part).get_filename() or ""
    except Exception:  # malformed parameters
        return ""
    return _collapse(_decode_words(_unsurrogate(name)))


def _with_decoded_type_headers(part: Message) -> Message:
    """The part itself, or a stand-in whose type headers hold text instead of raw 8-bit bytes.

    compat32 reads a parameter of a header with raw 8-bit bytes through a Header
    object that turns each of those bytes into U+FFFD.
    """
    wanted = {"content-type", "content-disposition"}
    raw = [(name, value) for name, value in part.raw_items() if name.lower() in wanted]
    if all(isinstance(value, str) and value.isascii() for _, value in raw):
        return part
    stand_in = Message()
    for name, value in raw:
        stand_in[name] = _unsurrogate(str(value))
    return stand_in


def _safe_filename(name: str, ctype: str, index: int) -> str:
    """A name that cannot escape a folder or hide: no path, control or leading dots, <= 150 chars."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    # Drop control, format (bidi overrides) and unassigned characters.
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = _UNSAFE_NAME_CHARS.sub("_", name).strip().lstrip(". ").rstrip(". ")
    if not name:
        extension = mimetypes.guess_extension(ctype, strict=False) or ".bin"
        return f"attachment-{index}{extension}"
    if len(name) > _MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        if not dot or len(extension) > 10:
            stem, extension = name, ""
        keep = _MAX_FILENAME - len(extension) - (1 if extension else 0)
        name = stem[:keep].rstrip(". ") + ("." + extension if extension else "")
    return name
