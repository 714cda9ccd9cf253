"""Signed reply tokens: `assistance+<case>-<mac>@domain`, bound to a case and a recipient.

A reply that comes back through the token finds its case even when the subject was
mangled. The MAC covers the case number and the recipient's address, so a token only
works for the person it was sent to; a bad or foreign token authorises nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.models import State

_TOKEN = re.compile(r"^(\d{1,12})-([0-9a-f]{20})$")
_CONFIRMATION = re.compile(r"^k(\d{1,12})-([0-9a-f]{20})$")


def secret(session: Session, settings: Settings) -> bytes:
    """The configured secret, or one generated once and kept in the database."""
    if settings.support.token_secret:
        return settings.support.token_secret.encode()
    # Kept for the session's lifetime: a batch of messages reads it once.
    cached = session.info.get("token_secret")
    if isinstance(cached, bytes):
        return cached
    row = session.get(State, "token_secret")
    if row is None:
        row = State(key="token_secret", value=secrets.token_hex(32))
        session.add(row)
        session.flush()
    key = session.info["token_secret"] = row.value.encode()
    return key


def make(key: bytes, case: int, recipient: str) -> str:
    mac = hmac.new(key, f"{case}:{recipient.lower()}".encode(), hashlib.sha256).hexdigest()[:20]
    return f"{case}-{mac}"


def number_named(token: str) -> int | None:
    """The case number a token names, unverified (to read the case ahead: pipeline/reference.py)."""
    m = _TOKEN.match(token.lower())
    return int(m.group(1)) if m else None


def verify(key: bytes, token: str, sender: str) -> int | None:
    """The case number when `token` was issued to `sender`, else None."""
    m = _TOKEN.match(token.lower())
    if not m:
        return None
    case = int(m.group(1))
    return case if hmac.compare_digest(make(key, case, sender), token.lower()) else None


def make_confirmation(key: bytes, confirmation: int, address: str) -> str:
    """The token of a confirmation mail: `k<id>-<mac>`, bound to the address asked."""
    mac = hmac.new(key, f"k{confirmation}:{address.lower()}".encode(), hashlib.sha256).hexdigest()[:20]
    return f"k{confirmation}-{mac}"


def verify_confirmation(key: bytes, token: str, sender: str) -> int | None:
    """The confirmation id when `token` is that of a confirmation asked of `sender`."""
    m = _CONFIRMATION.match(token.lower())
    if not m:
        return None
    number = int(m.group(1))
    return number if hmac.compare_digest(make_confirmation(key, number, sender), token.lower()) else None
