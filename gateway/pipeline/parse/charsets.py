"""Decode what a message carries as bytes into text: body parts, raw 8-bit header values
and RFC 2047 encoded words.

Never raises. Mail in the wild declares unknown or wrong charsets, or none: those fall
back to UTF-8, and the bytes that are not UTF-8 are read as windows-1252, which is what
they almost always are.
"""
from __future__ import annotations

import codecs
from email.header import decode_header


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


def decode_bytes(data: bytes, charset: str | None) -> str:
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
    """The codec a charset label names, or None when no codec answers to it."""
    if not charset:
        return None
    try:
        return codecs.lookup(charset.strip().strip('"')).name
    except (LookupError, ValueError, TypeError):
        return None


def unsurrogate(value: str) -> str:
    """Turn raw 8-bit header bytes, which the parser keeps as surrogates, into text."""
    if value.isascii():
        return value
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # already real text
        return value
    return decode_bytes(raw, None)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; text that is not encoded is kept as it is."""
    if "=?" not in value:
        return value
    try:
        chunks = decode_header(value)
    except Exception:  # bad base64 in an encoded word: show the header as written
        return value
    # decode_header gives unencoded runs back as raw-unicode-escape bytes.
    return "".join(
        chunk if isinstance(chunk, str) else decode_bytes(chunk, charset or "raw-unicode-escape")
        for chunk, charset in chunks
    )
