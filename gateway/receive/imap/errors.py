"""What went wrong at the IMAP door, in words: a state for `gateway status` and one sentence
for the log. Takes exceptions, returns text; never logs and never raises."""
from __future__ import annotations

import re
import ssl

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

# imaplib leaves the server's reply as b'...' inside its messages.
_BYTES_REPR = re.compile(r"""\bb(['"])(.*?)\1""")


class StoreFailed(Exception):
    """The database did not store a message; it stays on the server for the next pass."""


def expected(exc: Exception) -> bool:
    """True for the failures a door meets in ordinary life (no traceback is worth logging)."""
    return isinstance(exc, (StoreFailed, OSError, IMAPClientError))


def describe(exc: Exception) -> tuple[str, str]:
    """A state for `gateway status` and one sentence for the log."""
    if isinstance(exc, LoginError):
        return "login refused", f"login refused: {text(exc)}"
    if isinstance(exc, StoreFailed):
        return "could not store", str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "connection failed", f"server certificate not trusted: {exc.verify_message}"
    if isinstance(exc, (OSError, IMAPClient.AbortError)):
        return "connection failed", f"connection failed or lost: {text(exc) or type(exc).__name__}"
    if isinstance(exc, IMAPClientError):
        return "server refused", f"server refused: {text(exc)}"
    return "error", f"unexpected {type(exc).__name__}: {exc}"


def text(exc: BaseException) -> str:
    """The first line of `exc`'s message, without the b'...' imaplib leaves around replies."""
    lines = str(exc).strip().splitlines()
    return _BYTES_REPR.sub(r"\2", lines[0] if lines else "")
