"""What the gateway keeps of a value that comes from outside: one function per kind of value.

SQLite does not enforce VARCHAR lengths and PostgreSQL does; PostgreSQL refuses NUL in text.
Every value taken from a message, an envelope or a mailbox goes through one of these before
it can reach a column, so both databases store the same thing and neither refuses it:

- an address (senders, recipients, contacts: String(320)) is lowercased, at most 254
  characters (RFC 5321), else not an address;
- a Message-ID (inbound `message_id`, case `thread_id`: String(255), threading headers) is
  `<id>` of printable ASCII; a longer one becomes a digest of itself;
- a unique key (`dedupe_key` (998), `source_key` (512)) is kept as is, or cut with a
  digest of the whole, so keys stay unique;
- a line (display names, subjects, envelope addresses, reasons) is one line without
  control characters, cut at its limit;
- a text (what people wrote) loses its control characters but line breaks and tabs.

Pure functions; they never raise on any string.
"""
from __future__ import annotations

import hashlib
import re

ADDRESS = 254        # the longest address RFC 5321 allows (a path of 256 octets with <>)
MESSAGE_ID = 250     # fits cases.thread_id, String(255)
ENVELOPE = 320       # inbound envelope_from and every address column, String(320)
NAME = 200           # a display name (contacts.name is String(255))
SUBJECT = 1000       # a subject: RFC 5322 lines stop at 998 characters
REASON = 2000        # one reason of an outcome
SOURCE_KEY = 512     # inbound source_key, String(512)
CASE_NUMBER = 2**31 - 1  # the largest case number: cases.id is a 32-bit integer on PostgreSQL

_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r"\s+")
_ANGLE_ID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]+)>")
_BARE_ID = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")


def text(value: str) -> str:
    """Text as written, without NUL and the other control characters (line breaks, tabs
    and carriage returns stay)."""
    return _CONTROLS.sub("", value)


def line(value: str, limit: int) -> str:
    """One line: control characters and runs of blanks become one space, at most `limit`
    characters."""
    return _SPACES.sub(" ", _LINE_CONTROLS.sub(" ", value[: limit * 4])).strip()[:limit]


def address(value: str | None) -> str | None:
    """A lowercased address, or None when it cannot be one (too long, control characters)."""
    if not value or len(value) > ADDRESS or _LINE_CONTROLS.search(value):
        return None
    return value.lower()


def envelope(value: str | None) -> str | None:
    """An SMTP envelope address as stored: one line, at most 320 characters ("" stays "",
    the null sender)."""
    return None if value is None else line(value, ENVELOPE)


def message_id(value: str) -> str | None:
    """The `<id>` a Message-ID field (or In-Reply-To entry) holds, or None.

    Takes the first `<...>` of printable ASCII, else the value itself when it is one bare
    token. An id longer than 250 characters becomes `<digest@long-id.invalid>`, the same
    for every copy, so that duplicates and threads still meet."""
    value = value[:4000]
    match = _ANGLE_ID.search(value)
    if match:
        found = match.group(1)
    else:
        bare = value.strip()
        if not _BARE_ID.fullmatch(bare):
            return None
        found = bare
    if len(found) + 2 > MESSAGE_ID:
        return f"<{hashlib.sha256(found.encode()).hexdigest()[:40]}@long-id.invalid>"
    return f"<{found}>"


def message_ids(value: str) -> list[str]:
    """Every `<id>` in a References or In-Reply-To field, each bounded like `message_id`."""
    return [f"<{found}>" if len(found) + 2 <= MESSAGE_ID else message_id(f"<{found}>") or ""
            for found in _ANGLE_ID.findall(value)]


def key(value: str, limit: int) -> str:
    """A unique key that fits `limit` characters: as it is, or its start followed by a
    digest of the whole, so that two different keys never become one."""
    value = _LINE_CONTROLS.sub("", value)
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{value[: limit - len(digest) - 1]}#{digest}"


def is_case_number(number: int) -> bool:
    """Whether a case may have this number (a larger one written in a message names no
    case; looked up, PostgreSQL would refuse it as out of range)."""
    return 0 < number <= CASE_NUMBER


def cut_note(what: str, total: int, kept: int, unit: str = "characters") -> str:
    """The reason that says a value was read only in part, e.g. "subject of 20,000,000
    characters: the first 1,000 read; the raw message keeps all"."""
    return f"{what} of {total:,} {unit}: the first {kept:,} read; the raw message keeps all"
