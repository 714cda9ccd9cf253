"""Header fields: their values unfolded and decoded, and what they say (subject, addresses,
message ids, date, language).

Each value is bounded the way `gateway.bounds` says: a 1,000-character subject, 100
addresses per field, 100 message ids per threading field; what is cut is added to the
`notes` the caller gives. A message's own Message-ID is read from its raw bytes instead,
by `gateway.raw.message_id`, the reader intake uses too.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from gateway import bounds
from gateway.bounds import cut_note
from gateway.pipeline.parse.charsets import decode_words, unsurrogate

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_SPACES = re.compile(r"\s+")
_ADDR_SPEC = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*@[\w-]+(?:\.[\w-]+)*")
_MAX_ADDRESSES = 100  # per address field: a Cc of thousands would cost a look-up each
_MAX_IDS = 100  # per threading field; the newest (last) are kept
_SUBJECT_READ = 16 * bounds.SUBJECT  # raw characters decoded: encoded words take up to 16 each
_NAME_READ = 16 * bounds.NAME


class Fields:
    """The top-level header fields by lowercase name, read on demand: unfolded, 8-bit
    bytes decoded (a message may carry thousands of fields the gateway never reads)."""

    def __init__(self, message: Message) -> None:
        self._raw: dict[str, list[str]] = {}
        for name, value in message.raw_items():
            self._raw.setdefault(name.strip().lower(), []).append(value if isinstance(value, str) else str(value))

    def has(self, name: str) -> bool:
        """Whether the message has at least one `name` field."""
        return name in self._raw

    def all(self, name: str) -> list[str]:
        """The values of every `name` field, in their order."""
        return [unfold(unsurrogate(value)) for value in self._raw.get(name, [])]

    def first(self, name: str) -> str:
        """The value of the first `name` field, or ""."""
        values = self._raw.get(name)
        return unfold(unsurrogate(values[0])) if values else ""


def first_field(message: Message, name: str) -> str:
    """The first `name` field (lowercase) of a nested message, unfolded, 8-bit bytes decoded."""
    for key, value in message.raw_items():
        if key.strip().lower() == name:
            return unfold(unsurrogate(str(value)))
    return ""


def unfold(value: str) -> str:
    """A folded header value on one line."""
    return _FOLD.sub("", value).replace("\r", "").replace("\n", " ")


def collapse(value: str) -> str:
    """A value without control characters, each run of blanks one space, stripped."""
    return _SPACES.sub(" ", bounds.text(value)).strip()


def subject(written: str, cuts: list[tuple[str, int, int]], notes: list[str]) -> str:
    """The decoded subject, at most `bounds.SUBJECT` characters. `cuts` are those the
    bounded policy made as it read the header: a subject cut there is noted at its length."""
    decoded = collapse(decode_words(written[:_SUBJECT_READ]))
    cut_before = next((n for name, n, _ in cuts if name.lower() == "subject"), 0)
    if cut_before or len(written) > _SUBJECT_READ:  # too long to decode whole: its written length
        notes.append(cut_note("subject", max(cut_before, len(written)), bounds.SUBJECT))
    elif len(decoded) > bounds.SUBJECT:
        notes.append(cut_note("subject", len(decoded), bounds.SUBJECT))
    return decoded[: bounds.SUBJECT]


def threading_ids(values: list[str], name: str, notes: list[str]) -> tuple[str, ...]:
    """The message ids of a threading field, the last 100 when there are more."""
    found = [i for value in values for i in bounds.message_ids(value)]
    if len(found) > _MAX_IDS:
        notes.append(cut_note(name, len(found), _MAX_IDS, "message ids").replace("the first", "the last", 1))
    return tuple(found[-_MAX_IDS:])


def sender(values: list[str]) -> tuple[str, str | None]:
    """(display name, address) of the From field; the address only if it is exactly one valid one."""
    written = ", ".join(values)
    pairs = [(name, addr) for name, addr in _pairs(written) if name or addr]
    if not pairs:
        return "", None
    name, address = pairs[0]
    name = collapse(decode_words(name[:_NAME_READ]))[: bounds.NAME]
    if len(pairs) != 1 or not _valid_address(address, written):
        return name, None
    return name, address.lower()


def addresses(values: list[str], name: str, notes: list[str]) -> tuple[str, ...]:
    """The valid addresses of an address-list field, lowercased; the first 100."""
    written = ", ".join(values)
    found = [addr.lower() for _, addr in _pairs(written) if _valid_address(addr, written)]
    if len(found) > _MAX_ADDRESSES:
        notes.append(cut_note(name, len(found), _MAX_ADDRESSES, "addresses"))
    return tuple(found[:_MAX_ADDRESSES])


def _valid_address(address: str, written: str) -> bool:
    """Whether an address read from a field is one: bounded, well formed, as written."""
    # getaddresses() glues "jean @x.example" into "jean@x.example": an address
    # that does not appear as written was not valid.
    return bounds.address(address) is not None and bool(_ADDR_SPEC.fullmatch(address)) and address in written


def _pairs(written: str) -> list[tuple[str, str]]:
    """(name, address) of each mailbox of an address field; [] when it cannot be read."""
    try:
        return getaddresses([written])
    except Exception:  # its recursive parser gives up on fields of thousands of words
        return []


def date(value: str) -> datetime | None:
    """The Date field as an aware datetime, or None when it is not a date."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # "-0000" means "time zone unknown"; the time is then UTC by convention.
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def return_path(values: list[str]) -> str | None:
    """The address in the first Return-Path, "" for the null sender "<>"."""
    if not values:
        return None
    match = re.search(r"<([^<>]*)>", values[0])
    return (match.group(1) if match else values[0]).strip()


def language(value: str) -> str:
    """The first language of a Content-Language (or Accept-Language) field, lowercased."""
    return value.split(",")[0].split(";")[0].strip().lower()
