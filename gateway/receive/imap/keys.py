"""Source keys: where a message was read (server, user, folder, UIDVALIDITY, UID), and which
of them are stored already.

A message is stored under `imap:<host>:<user>:<folder>:<uidvalidity>:<uid>`, a key unique in
inbound_messages: two gateways reading one mailbox, or a pass after a cut, store it once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from gateway import bounds
from gateway.config import ImapSettings
from gateway.db import session_scope
from gateway.models import InboundMessage


@dataclass(frozen=True)
class Folder:
    """One selected folder: where its source keys start, and its UIDVALIDITY."""
    name: str
    prefix: str  # imap:<host>:<user>:<folder>:
    uidvalidity: int

    @classmethod
    def selected(cls, imap: ImapSettings, name: str, response: dict[bytes, Any]) -> Folder:
        """The folder `name` as the server's answer to SELECT describes it."""
        # Bounded so that every source key of the folder fits its column, the same for all.
        prefix = bounds.key(f"imap:{imap.host}:{imap.username}:{name}", bounds.SOURCE_KEY - 41)
        return cls(name, prefix + ":", int(response[b"UIDVALIDITY"]))

    @property
    def label(self) -> str:
        """The folder's name in the door's status, the same across UIDVALIDITY changes."""
        return self.prefix.rstrip(":")

    def key(self, uid: int) -> str:
        """The source key of the message `uid`."""
        return f"{self.prefix}{self.uidvalidity}:{uid}"


def known(engine: Engine, keys: list[str]) -> dict[str, int]:
    """The source keys among `keys` already stored, with their rows."""
    with session_scope(engine) as session:
        found = session.execute(select(InboundMessage.source_key, InboundMessage.id)
                                .where(InboundMessage.source_key.in_(keys)))
        return {key: row for key, row in found if key is not None}


def stored_before(engine: Engine, folder: Folder, raw: bytes) -> int | None:
    """The row of these very bytes stored from this folder under another UIDVALIDITY."""
    current = f"{folder.prefix}{folder.uidvalidity}:"
    with session_scope(engine) as session:
        return session.scalar(
            select(InboundMessage.id).where(
                InboundMessage.digest == hashlib.sha256(raw).hexdigest(),
                InboundMessage.source_key.startswith(folder.prefix, autoescape=True),
                ~InboundMessage.source_key.startswith(current, autoescape=True))
            .order_by(InboundMessage.id).limit(1))
