"""Write Subject and address headers so that a strict RFC 2047 decoder reads back exactly
the text meant.

CPython's own folding (policy.default and policy.SMTP, 3.11 to 3.13) can leave the only
space between two words between two encoded words, where RFC 2047 decoders drop it: mutt
and Thunderbird showed "pas pu êtretraitée". Here a value is either simple ASCII, folded
at its own spaces, or a run of UTF-8 encoded words (cut by `email.charset`, which never
splits a character) that carry every character, spaces included, and are folded between
the words, where decoders drop the folding whitespace. Every line fits in 78 characters
(unless one address is longer than that: it cannot be folded) and every encoded word in 75.

The result is a header object (`Written`): an `EmailMessage` stores it as is and its
generator writes `fold()`'s lines without parsing or refolding them. Never changes the
text; never decides what the text should be (cleaning names is the caller's job).
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from email.charset import Charset
from email.policy import Policy

MAX_LINE = 78
MAX_WORD = 75  # RFC 2047 section 2: an encoded word is at most 75 characters.
_UTF8 = Charset("utf-8")
# Printable ASCII words separated by single spaces: what can be folded at its own spaces.
_SIMPLE = re.compile(r"[!-~]+(?: [!-~]+)*")
# RFC 5322 atoms separated by single spaces: a display name needing no quotes.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


class Written(str):
    """A header ready to write: the text a reader sees (the str) and its folded lines.

    It follows the protocol of `email.headerregistry` header objects (a `name` and a
    `fold` method): `EmailPolicy.header_store_parse` keeps it unchanged and the generator
    writes what `fold` returns, with the policy's line separator.
    """

    name: str
    lines: tuple[str, ...]

    def __new__(cls, name: str, text: str, lines: Iterable[str]) -> Written:
        self = super().__new__(cls, text)
        self.name, self.lines = name, tuple(lines)
        return self

    def __getnewargs__(self) -> tuple[str, str, tuple[str, ...]]:  # type: ignore[override]
        # copy.deepcopy (which the generator uses on some parts) rebuilds it from these.
        return self.name, str(self), self.lines

    def fold(self, *, policy: Policy) -> str:
        """The header's lines joined by `policy.linesep`, ending with one."""
        return policy.linesep.join(self.lines) + policy.linesep


def unstructured(name: str, text: str) -> Written:
    """`text` as an unstructured header such as Subject. Any text without lone surrogates
    decodes back exactly; `text` is not cleaned here (see `compose.clean_header`)."""
    budget = _budget(name)
    if not text:
        tokens = []
    elif _simple(text, budget):
        tokens = text.split(" ")
    else:
        tokens = _encoded_words(text, budget)
    return Written(name, text, _fold(name, tokens))


def address_list(name: str, mailboxes: Sequence[tuple[str, str]]) -> Written:
    """(display name, address) pairs as an address header such as From, To, Cc or Reply-To.

    Raises ValueError for an address that is not ASCII: without SMTPUTF8 no header can
    carry it, and an encoded word is not allowed in an address."""
    budget = _budget(name)
    tokens: list[str] = []
    for display, address in mailboxes:
        if not address.isascii():
            raise ValueError(f"{name}: {address!r} is not ASCII and cannot be written in a header")
        if tokens:
            tokens[-1] += ","
        tokens += (_phrase(display, budget) + [f"<{address}>"]) if display else [address]
    shown = ", ".join(f"{display} <{address}>" if display else address for display, address in mailboxes)
    return Written(name, shown, _fold(name, tokens))


def _budget(name: str) -> int:
    # Every word, plain or encoded, must fit on the first line after "Name: " too.
    return min(MAX_WORD, MAX_LINE - len(name) - 2)


def _simple(text: str, budget: int) -> bool:
    """Whether `text` can be written as it is: printable ASCII, single spaces, no "=?"
    (which a decoder would take for the start of an encoded word), no word too long to fold."""
    return (_SIMPLE.fullmatch(text) is not None and "=?" not in text
            and all(len(word) <= budget for word in text.split(" ")))


def _phrase(display: str, budget: int) -> list[str]:
    """A display name's tokens: atoms as they are, other simple ASCII quoted, the rest encoded."""
    if _simple(display, budget):
        if _ATOMS.fullmatch(display):
            return display.split(" ")
        quoted = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
        # Folding inside a quoted string is allowed (RFC 5322 3.2.4) and unfolds to the same text.
        words = quoted.split(" ")
        if all(len(word) <= budget for word in words):
            return words
    return _encoded_words(display, budget)


def _encoded_words(text: str, budget: int) -> list[str]:
    """UTF-8 encoded words (Q or B, whichever is shorter) of at most `budget` characters.

    `Charset.header_encode_lines` adds whole characters until the next would not fit, so a
    UTF-8 sequence is never split; its Q alphabet is the one RFC 2047 allows in a phrase."""
    return [word for word in _UTF8.header_encode_lines(text, itertools.repeat(budget)) if word is not None]


def _fold(name: str, tokens: Sequence[str]) -> list[str]:
    """`name: ` and the tokens joined by single spaces, a line break before a token that
    would make the line longer than MAX_LINE (unfolding puts back exactly one space)."""
    lines = [f"{name}:"]
    for i, token in enumerate(tokens):
        if i and len(lines[-1]) + 1 + len(token) > MAX_LINE:
            lines.append("")
        lines[-1] += " " + token
    return lines
