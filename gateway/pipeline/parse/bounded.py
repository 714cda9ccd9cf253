"""Read a raw message within bounds: however big or odd it is, parsing it costs bounded time.

The standard library's parser spends time on every line and every MIME part, and re-reads
a header's parameters once per parameter (quadratic in their number). `trim` cuts a message
of more than 500,000 lines, or of 10,000 lines starting with "--" (MIME boundaries: the
pipeline reads 500 parts anyway), or whose header block has more than 10,000 lines.
`BoundedPolicy` cuts header values as the parser reads them: Content-Type and
Content-Disposition at 4,096 characters and 64 parameters (a long file name in RFC 2231
pieces takes about 25), any other at 32,000, References and In-Reply-To keeping their end
(where the newest messages are). Everything cut is recorded, so that the outcome's reasons
say it; the stored raw message keeps all of it. Pure: no I/O.
"""
from __future__ import annotations

from email.policy import Compat32

from gateway.bounds import cut_note
from gateway.raw import header_end as header_of

MAX_LINES = 500_000
MAX_HEADER_LINES = 10_000
MAX_BOUNDARIES = 10_000
MAX_FIELD = 32_000
MAX_PARAMETER_FIELD = 4_096
MAX_PARAMETERS = 64
_PARAMETER_FIELDS = frozenset({"content-type", "content-disposition"})
TAIL_FIELDS = frozenset({"references", "in-reply-to"})
_CHUNK = 1 << 16


class BoundedPolicy(Compat32):
    """The compat32 policy, with header values cut as they are read. Given a list as `cuts`,
    it records each cut there: (field name as written, length before, length kept)."""

    cuts: list[tuple[str, int, int]] | None = None

    def __init__(self, cuts: list[tuple[str, int, int]] | None = None) -> None:
        super().__init__()
        # A policy is immutable once built: its own __setattr__ refuses.
        object.__setattr__(self, "cuts", cuts)

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        """(name, value) of a header field's lines, as compat32 reads them, the value cut."""
        name, value = super().header_source_parse(sourcelines)
        folded = name.strip().lower()
        limit = MAX_PARAMETER_FIELD if folded in _PARAMETER_FIELDS else MAX_FIELD
        if folded in _PARAMETER_FIELDS and value.count(";", 0, limit) > MAX_PARAMETERS:
            limit = _nth_str(value, ";", MAX_PARAMETERS + 1)
        if len(value) > limit:
            if self.cuts is not None:
                self.cuts.append((name.strip(), len(value), limit))
            value = value[-limit:] if folded in TAIL_FIELDS else value[:limit]
        return name, value


def _nth_str(text: str, sep: str, n: int) -> int:
    """The offset of the n-th `sep` in `text` (which has at least n)."""
    position = -1
    for _ in range(n):
        position = text.find(sep, position + 1)
    return position


def trim(raw: bytes) -> tuple[bytes, list[str]]:
    """The part of `raw` worth parsing, and a note for each cut made."""
    notes = []
    header_end, body = header_of(raw)
    header_lines = raw.count(b"\n", 0, header_end) + 1
    if header_lines > MAX_HEADER_LINES:
        cut = _nth(raw, b"\n", MAX_HEADER_LINES, 0, header_end)
        raw = raw[: cut + 1] + (b"\n" + raw[body:] if body < len(raw) else b"")
        notes.append(cut_note("header", header_lines, MAX_HEADER_LINES, "lines"))
    newlines, returns = raw.count(b"\n"), raw.count(b"\r")
    lines = newlines + returns - raw.count(b"\r\n")
    if lines > MAX_LINES:
        cut = _nth(raw, b"\n" if newlines >= MAX_LINES else b"\r", MAX_LINES, 0, len(raw))
        raw = raw[: cut + 1]
        notes.append(cut_note("message", lines, MAX_LINES, "lines"))
    boundaries = raw.count(b"\n--")
    if boundaries > MAX_BOUNDARIES:
        raw = raw[: _nth(raw, b"\n--", MAX_BOUNDARIES + 1, 0, len(raw)) + 1]
        notes.append(cut_note("message", boundaries, MAX_BOUNDARIES, "MIME boundaries"))
    return raw, notes


def _nth(data: bytes, sep: bytes, n: int, start: int, end: int) -> int:
    """The offset of the n-th `sep` in data[start:end], counted in C a chunk at a time;
    `end` when there are fewer."""
    position = start
    while position < end:
        stop = min(position + _CHUNK, end)
        found = data.count(sep, position, stop)
        if found >= n:
            for _ in range(n):
                position = data.find(sep, position, stop) + 1
            return position - 1
        n -= found
        position = stop
    return end


def cut_notes(cuts: list[tuple[str, int, int]], skip: frozenset[str] = frozenset()) -> list[str]:
    """The reasons saying which header values `BoundedPolicy` cut (but those in `skip`)."""
    notes = []
    for name, total, kept in cuts:
        folded = name.lower()
        if folded in skip:
            continue
        end = "last" if folded in TAIL_FIELDS else "first"
        notes.append(cut_note(f"{name} header", total, kept).replace("the first", f"the {end}", 1))
    return notes
