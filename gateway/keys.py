"""What identifies a raw message, read from its bytes alone: its digest, its Message-ID and
its dedupe key (see `intake`). Pure and free of the database, so that a backlog's reading
process (pipeline/ahead.py) computes them beside the writer.

The same message is the same Message-ID with the same content: the same From, Date and
Subject fields and the same body, whatever trace fields (Received, Return-Path,
Authentication-Results...) each path added. A message without a Message-ID is the same
only byte for byte.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from gateway import bounds
from gateway import raw as raw_bytes

_SAME_MESSAGE_FIELDS = (b"from", b"date", b"subject")
_CHUNK = 1 << 20
_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")


@dataclass(frozen=True)
class Keys:
    """What identifies a raw message: its bytes' digest, its Message-ID, its dedupe key."""
    digest: str
    message_id: str | None
    dedupe: str


def keys_of(raw: bytes) -> Keys:
    """The keys of `raw`."""
    digest = hashlib.sha256(raw).hexdigest()
    # The parser reads the Message-ID with the same function: the dedupe key and the
    # threading id of a message are one id.
    message_id = raw_bytes.message_id(raw)
    dedupe = f"{message_id} {content_key(raw)}" if message_id else f"sha256:{digest}"
    return Keys(digest, message_id, bounds.key(dedupe, 998))


def content_key(raw: bytes) -> str:
    """A digest of what makes a message itself: its From, Date and Subject fields and its
    body (line ends aside), and none of the trace fields a path adds."""
    end, body = raw_bytes.header_end(raw)
    header = raw[:end]
    lowered = header.lower()
    content = hashlib.sha256()
    for name in _SAME_MESSAGE_FIELDS:
        content.update(raw_bytes.field(header, name, lowered).lower() + b"\n")
    update_body(content, raw, body)
    return content.hexdigest()


def update_body(content: Any, raw: bytes, start: int) -> None:
    """Hash `raw[start:]` with CRLF as LF and trailing whitespace removed, as
    `raw[start:].replace(b"\\r\\n", b"\\n").rstrip()` would, a megabyte at a time: a
    25 MB message is not copied whole (twice) to be hashed."""
    end = len(raw)
    while end > start and raw[end - 1] in _WHITESPACE:
        end -= 1
    view = memoryview(raw)
    while start < end:
        stop = min(start + _CHUNK, end)
        if stop < end and raw[stop - 1] == 13 and raw[stop] == 10:  # never split a CRLF
            stop += 1
        content.update(bytes(view[start:stop]).replace(b"\r\n", b"\n"))
        start = stop
