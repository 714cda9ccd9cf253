"""Facts about a raw message read straight from its bytes, without parsing it.

Where its header block ends, the value of one of its fields, and its Message-ID. Cheap
whatever the bytes (searches that run in C, a value read from its first 4,000 bytes), so
that a door can use them before it answers, and the parser can bound what it reads. Pure.
"""
from __future__ import annotations

import re

from gateway import bounds

_VALUE = re.compile(rb"[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")
_VALUE_BYTES = 4000
_BOM = b"\xef\xbb\xbf"
_BLANK_LINE = re.compile(rb"\n\r?\n")


def header_end(raw: bytes) -> tuple[int, int]:
    """(end of the header block, start of the body): the first empty line splits them; a
    message without one is all header, (len, len). One search: `find(b"\n\n")` went through
    the whole of a message whose lines end in CRLF."""
    blank = _BLANK_LINE.search(raw)
    if blank is None:
        return len(raw), len(raw)
    at = blank.start()
    return at - 1 if at and raw[at - 1] == 13 else at, blank.end()


def field(header: bytes, name: bytes, lowered: bytes | None = None) -> bytes:
    """The value of the first `name` field (lowercase) of a header block, unfolded, blanks
    collapsed, from its first 4,000 bytes; b"" when there is none. `lowered` is the header
    block in lowercase, when the caller reads several fields."""
    lowered = header.lower() if lowered is None else lowered
    if lowered.startswith(name + b":"):
        start = 0
    else:
        at = lowered.find(b"\n" + name + b":")
        if at < 0:
            return b""
        start = at + 1
    begin = start + len(name) + 1
    value = _VALUE.match(header[begin : begin + _VALUE_BYTES].replace(b"\r\n", b"\n"))
    return b" ".join(value.group(1).split()) if value else b""


def message_id(raw: bytes) -> str | None:
    """The Message-ID of a raw message as the gateway keeps it, or None when it has none.

    The first Message-ID field of the header block (after a UTF-8 byte order mark, which the
    parser skips too), normalised by `bounds.message_id`: `<id>` or a bare token, an id of
    more than 250 characters as its digest. The one reader of a message's own id: intake's
    dedupe key and the parser's threading id both come from here, so they cannot differ.
    """
    raw = raw.removeprefix(_BOM)
    value = field(raw[: header_end(raw)[0]], b"message-id")
    return bounds.message_id(value.decode("ascii", "replace")) if value else None
