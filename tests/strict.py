"""Read headers the way a strict mail client does: raw bytes -> unfolded value -> text.

Unfolding removes each line break before whitespace (RFC 5322 2.2.3); decoding is
`email.header.decode_header` + `make_header`, which drops the whitespace between two
encoded words as RFC 2047 says (mutt and Thunderbird do the same). `problems` lists what
a delivery gets wrong against the text meant, so that a test can show all of it at once.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from email.header import decode_header, make_header
from email.utils import getaddresses

ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[qQbB]\?[^?\s]*\?=")
WRITTEN = ("Subject", "From", "To", "Cc", "Reply-To")  # the headers the gateway encodes itself


def header_lines(raw: bytes) -> list[bytes]:
    """The lines of the header block of a raw message, without their line breaks."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    return re.split(rb"\r?\n", head)


def raw_fields(raw: bytes, name: str) -> list[list[bytes]]:
    """Each occurrence of header `name`, as its raw lines (the first starts with `name:`)."""
    fields: list[list[bytes]] = []
    for line in header_lines(raw):
        if line[:1] in (b" ", b"\t"):
            if fields and fields[-1]:
                fields[-1].append(line)
        else:
            is_it = line.split(b":", 1)[0].strip().lower() == name.lower().encode()
            fields.append([line] if is_it else [])
    return [f for f in fields if f]


def values(raw: bytes, name: str) -> list[str]:
    """Each occurrence of `name`, unfolded, without the leading whitespace of its body."""
    return [b"".join(lines).split(b":", 1)[1].lstrip(b" \t").decode("ascii", "replace")
            for lines in raw_fields(raw, name)]


def decode(value: str) -> str:
    """An unfolded value as a strict RFC 2047 decoder shows it."""
    return str(make_header(decode_header(value)))


def mailboxes(value: str) -> list[tuple[str, str]]:
    """An unfolded address header as (strictly decoded display name, address) pairs."""
    return [(decode(name), address) for name, address in getaddresses([value])]


def form_problems(raw: bytes, name: str) -> list[str]:
    """Lines over 78 characters, non-ASCII bytes, encoded words over 75 characters or not
    valid UTF-8 on their own (a character split between two words), in header `name`."""
    found = []
    for lines in raw_fields(raw, name):
        for line in lines:
            if len(line) > 78 or not line.isascii():
                found.append(f"{name}: bad line {line!r}")
        for word in ENCODED_WORD.findall(b" ".join(lines).decode("ascii", "replace")):
            [(data, charset)] = decode_header(word)
            if len(word) > 75 or charset != "utf-8":
                found.append(f"{name}: bad encoded word {word!r}")
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                found.append(f"{name}: encoded word {word!r} splits a character")
    return found


def problems(raw: bytes, subject: str, names: dict[str, Sequence[tuple[str, str | None]]]) -> list[str]:
    """What `raw` gets wrong: its Subject must decode to `subject`, and each address header
    in `names` (e.g. {"To": [(name, address)]}) to those display names and addresses (an
    address of None matches any: a Reply-To's token is not this module's business)."""
    found = [p for name in WRITTEN for p in form_problems(raw, name)]
    got_subject = [decode(v) for v in values(raw, "Subject")]
    if got_subject != [subject]:
        found.append(f"Subject: {got_subject!r} instead of {subject!r}")
    for name, expected in names.items():
        got = [mailboxes(v) for v in values(raw, name)]
        if not _matches(got, expected):
            found.append(f"{name}: {got!r} instead of {list(expected)!r}")
    return found


def _matches(got: list[list[tuple[str, str]]], expected: Sequence[tuple[str, str | None]]) -> bool:
    if not expected:
        return not got  # no mailbox, no header
    return (len(got) == 1 and len(got[0]) == len(expected)
            and all(name == want_name and want_address in (None, address)
                    for (name, address), (want_name, want_address) in zip(got[0], expected)))
