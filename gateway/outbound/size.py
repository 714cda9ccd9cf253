"""How big a mail gets once encoded, as an upper bound, so that no mail outgrows the relay.

`send.build` writes the text and HTML parts with Python's email package, which picks
7bit or 8bit when every line is short, else quoted-printable or base64 (whichever its
first lines make shorter); `part_bytes` bounds all four. A file travels base64-encoded in
76-character lines, under a header naming it (a non-ASCII name is percent-encoded, up to
12 characters for one). `HEADERS` covers the message's own header fields (but To and Cc,
counted apart) and the MIME boundaries. Pure arithmetic: never renders nor builds a mail.
"""
from __future__ import annotations

from collections.abc import Iterable

HEADERS = 16_000
_HIGH_BYTES = bytes(range(128, 256))


def part_bytes(text: str) -> int:
    """At most how many bytes a text part holding `text` takes, headers included."""
    data = text.encode("utf-8", "surrogateescape")
    lines = data.count(b"\n") + 1
    # Quoted-printable writes "=XX" for a byte above 127, for "=" and for a blank ending a
    # line, and breaks lines longer than 76 with "=\r\n".
    special = len(data) - len(data.translate(None, _HIGH_BYTES)) + data.count(b"=") + lines
    quoted = (len(data) + 2 * special) * 78 // 75 + 2 * lines
    base64 = -(-len(data) // 57) * 78
    return max(quoted, base64, len(data) + 2 * lines) + 300


def file_bytes(size: int, filename: str, content_type: str) -> int:
    """At most how many bytes a file of `size` bytes takes in a mail, headers included."""
    return -(-size // 57) * 78 + 400 + 12 * len(filename) + 2 * len(content_type)


def addresses_bytes(people: Iterable[tuple[str, str]]) -> int:
    """At most how many bytes the To and Cc fields naming `people` (name, address) take."""
    return sum(12 * len(name) + len(address) + 16 for name, address in people)
