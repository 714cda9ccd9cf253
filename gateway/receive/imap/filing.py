"""Filing stored messages: flag them \\Seen, then move them to `processed_folder` if one is set.

Only messages whose storing has committed are filed, so a pass cut short leaves its mail
untouched. A MOVE is a copy then an expunge: two gateways moving one message at once would
leave two copies. So the messages to move are first claimed the way the outbox claims a
delivery: one conditional UPDATE ... RETURNING sets inbound_messages.filing_until on the rows
nobody holds (or whose holder let its claim expire: it died) and returns the rows this door
won. A message another gateway holds is left to it; it files it.
"""
from __future__ import annotations

import datetime as dt
import logging

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import Engine, or_, select, update

from gateway.db import session_scope, utcnow
from gateway.models import InboundMessage

log = logging.getLogger(__package__)

SEEN = b"\\Seen"
CLAIM = dt.timedelta(seconds=120)  # a claim older than this is a gateway that died


def file(client: IMAPClient, engine: Engine, target: str, stored: dict[int, int]) -> None:
    """Flag the messages `stored` (UID -> stored row) \\Seen in the selected folder, and move
    those this door can claim to `target` ("": they stay). Raises IMAPClientError or OSError."""
    now = utcnow()
    claimed = claim(engine, set(stored.values()), now) if target else set()
    uids = [uid for uid, row in stored.items() if not target or row in claimed]
    try:
        _file(client, uids, target)
    finally:
        release(engine, claimed, now)


def claim(engine: Engine, rows: set[int], now: dt.datetime) -> set[int]:
    """The rows among `rows` this door may move now, claimed until `now` + CLAIM; empty when
    the database cannot say (the next pass tries again)."""
    if not rows:
        return set()
    # One statement that reads and locks: on SQLite a read followed by a write fails when
    # another gateway wrote in between. On PostgreSQL a second door waits for the first's
    # commit, then finds the rows claimed. Not SKIP LOCKED: the pipeline locks these rows
    # too while it processes them, and a skipped message would wait for the next pass to
    # be moved. Locking in id order, as the pipeline does, keeps the two from deadlocking.
    free = (select(InboundMessage.id)
            .where(InboundMessage.id.in_(rows),
                   or_(InboundMessage.filing_until.is_(None), InboundMessage.filing_until < now))
            .order_by(InboundMessage.id).with_for_update())
    try:
        with session_scope(engine) as session:
            return set(session.scalars(
                update(InboundMessage).where(InboundMessage.id.in_(free.scalar_subquery()))
                .values(filing_until=now + CLAIM).returning(InboundMessage.id)))
    except Exception as exc:  # noqa: BLE001 - nothing claimed: nothing moved, nothing lost
        log.debug("could not claim IMAP messages to file: %s", exc)
        return set()


def release(engine: Engine, rows: set[int], now: dt.datetime) -> None:
    """Give back the claims `claim(engine, rows, now)` won; one taken over since is kept."""
    if not rows:
        return
    try:
        with session_scope(engine) as session:
            session.execute(update(InboundMessage)
                            .where(InboundMessage.id.in_(rows), InboundMessage.filing_until == now + CLAIM)
                            .values(filing_until=None))
    except Exception as exc:  # noqa: BLE001 - a claim left behind only delays a move: it expires
        log.debug("could not release IMAP filing claims: %s", exc)


def _file(client: IMAPClient, uids: list[int], target: str) -> None:
    if not uids:
        return
    try:
        flag_and_move(client, uids, target)
    except IMAPClientError as exc:
        if "EXPUNGEISSUED" not in str(exc).upper():
            raise
        # Another gateway filed some of them first: file what is left.
        client.noop()
        left = client.search(["UID", ",".join(map(str, uids))])
        if left:
            flag_and_move(client, left, target)


def flag_and_move(client: IMAPClient, uids: list[int], target: str) -> None:
    """Flag `uids` \\Seen, then move them to `target` (created when missing) unless it is ""."""
    client.add_flags(uids, [SEEN], silent=True)
    if not target:
        return
    _make_folder(client, target)
    if client.has_capability("MOVE"):
        client.move(uids, target)
        return
    client.copy(uids, target)
    client.delete_messages(uids, silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        client.expunge()


def _make_folder(client: IMAPClient, name: str) -> None:
    if client.folder_exists(name):
        return
    try:
        client.create_folder(name)
    except IMAPClientError as exc:
        if "ALREADYEXISTS" not in str(exc).upper():  # else another gateway made it
            raise
