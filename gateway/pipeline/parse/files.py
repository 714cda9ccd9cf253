"""The parts of a message kept as files: their bytes, their names made safe, and whether
an image was shown within the text.

A file name comes from outside and ends up on disk and in download headers: it keeps no
path, no control or bidi characters, no leading dots, and at most 150 characters. A
forwarded message becomes a `.eml` file named after its subject.
"""
from __future__ import annotations

import binascii
import email.policy
import mimetypes
import re
import unicodedata
from email.message import Message

from gateway.pipeline.parse.charsets import decode_words, unsurrogate
from gateway.pipeline.parse.headers import collapse, first_field
from gateway.pipeline.parse.mail import Attachment

FORWARDED_TYPES = frozenset({"message/rfc822", "message/global"})
_MAX_FILENAME = 150
_UNSAFE_NAME_CHARS = re.compile(r'[<>:"|?*]')
_BASE64_LINES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n"
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def content(part: Message, ctype: str) -> tuple[bytes, str]:
    """(the bytes, the name as written) of a part kept as a file; b"" and "" when it has none."""
    if not part.is_multipart():
        decoded = _base64(part)
        if decoded is not None:
            return decoded, _filename(part)
        payload = part.get_payload(decode=True)
        return (payload if isinstance(payload, bytes) else b""), _filename(part)
    # message/*: the parser made a tree of it.
    inner = [message for message in part.get_payload() if isinstance(message, Message)]
    data = b"\n".join(_message_bytes(message) for message in inner)
    name = _filename(part)
    if ctype in FORWARDED_TYPES and inner:
        forwarded = collapse(decode_words(first_field(inner[0], "subject")))
        name = forwarded.replace("/", "_").replace("\\", "_") + ".eml" if forwarded else name
    return data, name


def _base64(part: Message) -> bytes | None:
    """The bytes of a well-formed base64 part, decoded without the copies `get_payload`
    makes (its lines split and joined again, three times the part's size); None for any
    other part, which `get_payload(decode=True)` reads (and whose defects it records).
    Well-formed: ASCII, only base64 digits and line ends, padding only at the end, a
    multiple of four digits; `a2b_base64` skips the line ends as `get_payload` drops them."""
    if str(part.get("content-transfer-encoding", "")).lower() != "base64":
        return None
    payload = part.get_payload()  # the text itself, not a copy, when it is ASCII
    if not isinstance(payload, str) or not payload.isascii():
        return None
    encoded = payload.encode("ascii")
    digits = len(encoded) - encoded.count(b"\n") - encoded.count(b"\r")
    pad = encoded.find(b"=")
    if encoded.translate(None, _BASE64_LINES) or digits % 4 \
            or (pad >= 0 and encoded[pad:].translate(None, b"\r\n").lstrip(b"=") != b"") \
            or (pad >= 0 and encoded.count(b"=", pad) > 2):
        return None
    return binascii.a2b_base64(encoded)


def attachment(part: Message, ctype: str, data: bytes, name: str, index: int) -> Attachment:
    """The part as the `index`-th file of its message: a safe name and content type."""
    safe_type = ctype if _CONTENT_TYPE.fullmatch(ctype) else "application/octet-stream"
    return Attachment(safe_filename(name, ctype, index), safe_type, data, _is_inline_image(part, ctype))


def _is_inline_image(part: Message, ctype: str) -> bool:
    """An image the sender's mail client showed within the text (inline, or referred to by
    a Content-ID from the HTML) rather than as a file beside it."""
    if not ctype.startswith("image/") or part.get_content_disposition() == "attachment":
        return False
    return part.get_content_disposition() == "inline" or part.get("content-id") is not None


def _message_bytes(message: Message) -> bytes:
    """A nested message as bytes (the parser keeps it as a tree)."""
    try:
        return message.as_bytes(policy=email.policy.compat32)
    except Exception:  # a tree the generator cannot write back; the stored raw message has it
        return b""


def _filename(part: Message) -> str:
    """The decoded file name of a part (RFC 2231, RFC 2047 or raw 8-bit), or ""."""
    try:
        name = _with_decoded_type_headers(part).get_filename() or ""
    except Exception:  # malformed parameters
        return ""
    return collapse(decode_words(unsurrogate(name)))


def _with_decoded_type_headers(part: Message) -> Message:
    """The part itself, or a stand-in whose type headers hold text instead of raw 8-bit bytes.

    compat32 reads a parameter of a header with raw 8-bit bytes through a Header
    object that turns each of those bytes into U+FFFD.
    """
    wanted = {"content-type", "content-disposition"}
    raw = [(name, value) for name, value in part.raw_items() if name.lower() in wanted]
    if all(isinstance(value, str) and value.isascii() for _, value in raw):
        return part
    stand_in = Message()
    for name, value in raw:
        stand_in[name] = unsurrogate(str(value))
    return stand_in


def safe_filename(name: str, ctype: str, index: int) -> str:
    """A name that cannot escape a folder or hide: no path, control or leading dots, <= 150
    characters; "attachment-<index>" with the type's extension when nothing is left."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    # Drop control, format (bidi overrides) and unassigned characters.
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = _UNSAFE_NAME_CHARS.sub("_", name).strip().lstrip(". ").rstrip(". ")
    if not name:
        extension = mimetypes.guess_extension(ctype, strict=False) or ".bin"
        return f"attachment-{index}{extension}"
    if len(name) > _MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        if not dot or len(extension) > 10:
            stem, extension = name, ""
        keep = _MAX_FILENAME - len(extension) - (1 if extension else 0)
        name = stem[:keep].rstrip(". ") + ("." + extension if extension else "")
    return name
