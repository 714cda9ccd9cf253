"""One pass over the folders: what to take, storing it, and the messages too big to take.

A pass reads the messages not flagged \\Seen, plus every message above the highest UID seen
so far (so mail that someone opened before the gateway did is not missed). Each is stored
through `intake.store` under its source key (keys.py) and filed (filing.py) only once that
has committed; after a UIDVALIDITY change a message whose bytes were already stored from the
same folder is recognised and only filed. A message over settings.smtp.max_message_bytes
(RFC822.SIZE, before fetching) is left in place, flagged `$GatewayTooBig`, and reported once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from imapclient import IMAPClient
from sqlalchemy import Engine

from gateway import intake
from gateway.config import Settings
from gateway.receive.imap import filing, keys
from gateway.receive.imap.connection import where
from gateway.receive.imap.errors import StoreFailed, text
from gateway.receive.imap.keys import Folder
from gateway.receive.imap.state import Counts, DoorStatus

log = logging.getLogger(__package__)

TOO_BIG = b"$GatewayTooBig"
BATCH = 200  # UIDs per FETCH of sizes and per database lookup

Outcome = Literal["stored", "known", "too_big"]  # the Counts field a message adds to


class Reader:
    """Reads settings.imap's folders into `intake`; keeps its marks and reports in `status`."""

    def __init__(self, settings: Settings, engine: Engine, on_stored: Callable[[int], None],
                 status: DoorStatus) -> None:
        self.settings, self.imap, self.engine = settings, settings.imap, engine
        self.on_stored, self.status = on_stored, status

    def run(self, client: IMAPClient) -> Counts:
        """Read every folder, stopping at the first message that cannot be stored (counted,
        not raised). Raises OSError or IMAPClientError when the connection fails."""
        counts = Counts()
        for name in self.imap.all_folders:
            self._read_folder(client, name, counts)
            if counts.failed:
                break
        return counts

    def _read_folder(self, client: IMAPClient, name: str, counts: Counts) -> None:
        """Take what a pass takes from `name`, then move its mark up to the highest UID seen."""
        selected = client.select_folder(name)
        folder = Folder.selected(self.imap, name, selected)
        mark = self.status.mark(folder)
        uids = sorted(client.search(_criteria(mark)))
        taggable = bool({b"\\*", TOO_BIG} & set(selected.get(b"PERMANENTFLAGS", ())))
        for start in range(0, len(uids), BATCH):
            self._read_batch(client, folder, uids[start:start + BATCH], taggable, counts)
            if counts.failed:
                return  # the highest UID seen stays where it was: nothing is skipped
        self.status.remember(folder, max([mark or 0, int(selected.get(b"UIDNEXT", 1)) - 1, *uids]))

    def _read_batch(self, client: IMAPClient, folder: Folder, batch: list[int], taggable: bool,
                    counts: Counts) -> None:
        """Take up to BATCH messages, then file those stored (and, after a failure, only those)."""
        info = client.fetch(batch, ["RFC822.SIZE", "FLAGS"])
        try:
            known = keys.known(self.engine, [folder.key(uid) for uid in batch])
        except Exception as exc:  # noqa: BLE001 - the database is down: try later
            counts.failed, counts.error = 1, f"{folder.name}: {text(exc)}"
            return
        done: dict[int, int] = {}  # UID -> the stored row
        for uid in (u for u in batch if u in info):  # others were expunged meanwhile
            try:
                outcome, row = self._take(client, folder, uid, info[uid], known, taggable)
            except StoreFailed as exc:
                counts.failed, counts.error = 1, str(exc)
                break
            counts.add(outcome)
            # A message already \Seen with nowhere to move it has nothing left to be done.
            if row is not None and (self.imap.processed_folder or filing.SEEN not in info[uid].get(b"FLAGS", ())):
                done[uid] = row
        filing.file(client, self.engine, self.imap.processed_folder, done)

    def _take(self, client: IMAPClient, folder: Folder, uid: int, info: dict[bytes, Any],
              known: dict[str, int], taggable: bool) -> tuple[Outcome, int | None]:
        """Store one message; return what it adds to the counts, and its row if stored.
        Raises StoreFailed."""
        if folder.key(uid) in known:
            return "known", known[folder.key(uid)]
        size = int(info.get(b"RFC822.SIZE", 0))
        if size > self.settings.smtp.max_message_bytes:
            self._too_big(client, folder, uid, size, info.get(b"FLAGS", ()), taggable)
            return "too_big", None
        raw = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
        if raw is None:
            return "known", None  # expunged meanwhile
        return self._store(folder, uid, raw)

    def _store(self, folder: Folder, uid: int, raw: bytes) -> tuple[Outcome, int]:
        try:
            before = keys.stored_before(self.engine, folder, raw)
            if before is not None:
                return "known", before
            stored = intake.store(self.engine, raw, door="imap", source_key=folder.key(uid))
        except Exception as exc:
            raise StoreFailed(f"{folder.name} UID {uid}: {text(exc)}") from exc
        try:
            self.on_stored(stored.id)
        except Exception:
            # The message is committed: it is flagged and moved all the same.
            log.exception("on_stored(%s) failed", stored.id)
        return "stored", stored.id

    def _too_big(self, client: IMAPClient, folder: Folder, uid: int, size: int,
                 flags: tuple[bytes, ...], taggable: bool) -> None:
        key = folder.key(uid)
        if TOO_BIG in flags or self.status.reported(key):
            return  # reported already
        limit = self.settings.smtp.max_message_bytes
        log.warning("IMAP %s: message UID %s in %s is %s bytes, over the %s-byte limit: left in place%s",
                    where(self.imap), uid, folder.name, size, limit,
                    f", flagged {TOO_BIG.decode()}" if taggable else "")
        if taggable:
            client.add_flags([uid], [TOO_BIG], silent=True)
        self.status.report(key=key, folder=folder.name, uid=uid, size=size)


def _criteria(mark: int | None) -> list[Any]:
    """The SEARCH for a pass: unseen mail, and everything above `mark` when it is known."""
    if mark is None:
        return ["NOT", "DELETED", "UNSEEN"]
    return ["NOT", "DELETED", "OR", "UNSEEN", "UID", f"{mark + 1}:*"]
