"""The MIME walk: the texts of a message (the preferred one of each set of alternatives,
HTML made plain), its files, and what its delivery report says.

Bounded: at most 500 MIME parts, 60 levels deep, and 300,000 characters (6,000 tags) of
HTML for the whole message; what is left unread is said in `Body.notes`. Walks without
recursion, so that no nesting can exhaust the stack.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from typing import NamedTuple

from gateway import bounds
from gateway.bounds import cut_note
from gateway.pipeline.parse import files, reports
from gateway.pipeline.parse.charsets import decode_bytes
from gateway.pipeline.parse.html_text import html_to_text
from gateway.pipeline.parse.mail import Attachment

_BODY_TYPES = frozenset({"text/plain", "text/html"})
_MAX_PARTS = 500
_MAX_DEPTH = 60
_MAX_HTML = 300_000  # characters of HTML converted, all parts together
_MAX_HTML_TAGS = 6_000  # and tags and entities ("<", "&"): html2text spends up to 70 µs on each


@dataclass(slots=True)
class Body:
    """What the walk over the MIME tree collects, and what it has left to read."""

    texts: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    bounced: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    defects: int = 0
    notes: list[str] = field(default_factory=list)
    html_left: int = _MAX_HTML
    tags_left: int = _MAX_HTML_TAGS


class _Entry(NamedTuple):
    """A part waiting to be read: whether its text is wanted (not a losing alternative),
    whether it sits inside a multipart/report, and how deep it is."""

    part: Message
    wants_text: bool
    in_report: bool
    depth: int


def read_body(message: Message, body: Body) -> Body:
    """Walk the MIME tree depth first, in document order, adding what it finds to `body`.

    Reads at most `_MAX_PARTS` parts and `_MAX_DEPTH` levels, and says so in `body.notes`
    when there were more.
    """
    pending = [_Entry(message, True, False, 0)]
    seen, too_deep = 0, False
    while pending:
        if seen == _MAX_PARTS:
            body.notes.append(cut_note("message", _count_parts(message), _MAX_PARTS, "MIME parts"))
            break
        entry = pending.pop()
        seen += 1
        part, ctype = entry.part, entry.part.get_content_type()
        if part is not message:
            body.defects += len(part.defects)
        # get_payload() without decode=True can raise on 8-bit text with an odd
        # charset parameter; is_multipart() says whether the payload is a tree.
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            children, deeper = _children(entry, ctype)
            pending.extend(reversed(children))  # popped from the end: the first child first
            too_deep = too_deep or deeper
        elif _is_text(part, ctype):
            if entry.wants_text:
                body.texts.append(_part_text(part, ctype, body))
        else:
            _add_file(part, ctype, entry.in_report, body)
    if too_deep:
        body.notes.append(f"MIME parts nested deeper than {_MAX_DEPTH} levels: not read; the raw message keeps them")
    return body


def _children(entry: _Entry, ctype: str) -> tuple[list[_Entry], bool]:
    """The entries of a multipart's parts, and whether it had parts too deep to be read."""
    children = [child for child in entry.part.get_payload() if isinstance(child, Message)]
    chosen = _preferred(children) if ctype == "multipart/alternative" else None
    in_report = entry.in_report or ctype == "multipart/report"
    if entry.depth >= _MAX_DEPTH:
        return [], bool(children)
    return [_Entry(child, entry.wants_text and (chosen is None or child is chosen), in_report, entry.depth + 1)
            for child in children], False


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
    """Whether a part holds anything but blanks."""
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


def _part_text(part: Message, ctype: str, body: Body) -> str:
    """The text of a part; an HTML part within what is left of the HTML budget."""
    data = part.get_payload(decode=True)
    text = decode_bytes(data if isinstance(data, bytes) else b"", _charset(part))
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


def _within(text: str, left: int, what: str, body: Body) -> str:
    """`text`, or its first `left` characters with a note saying so."""
    if len(text) <= left:
        return text
    body.notes.append(cut_note(what, len(text), max(left, 0)))
    return text[: max(left, 0)]


def _charset(part: Message) -> str | None:
    """The charset a part declares, or None when it declares none that can be read."""
    try:
        return part.get_content_charset()
    except Exception:  # a charset parameter no codec lookup accepts, e.g. with a NUL
        return None


def _clean_text(text: str) -> str:
    """Text with "\\n" line ends, no byte order mark or control characters, stripped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    return bounds.text(text).strip()


def _add_file(part: Message, ctype: str, in_report: bool, body: Body) -> None:
    """Keep a part as a file; the parts of a report also feed the bounce fields."""
    data, name = files.content(part, ctype)
    bounced, failed = reports.bounce_facts(part, ctype, in_report, data)
    body.bounced.extend(bounced)
    body.failed.extend(failed)
    if not part.is_multipart():
        part.set_payload("")  # its text, as long as the file and more, is read: let it go now
    if data or name:
        body.attachments.append(files.attachment(part, ctype, data, name, len(body.attachments) + 1))
