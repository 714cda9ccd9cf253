"""The IMAP door: fetch support mail from a mailbox, store it, then flag and move it.

A message is taken by UID and stored through `intake.store` under the source key
`imap:<host>:<user>:<folder>:<uidvalidity>:<uid>`; only once that has committed is it
flagged \\Seen and moved to `processed_folder`. Everything else follows from that order:
a pass cut short leaves the message untouched, and the next pass finds its key already
stored and only flags it; two gateways reading one mailbox store it once (the key is
unique); after a UIDVALIDITY change a message whose bytes were already stored from the
same folder is recognised and only flagged. The door does nothing else: `on_stored(id)`
wakes whoever runs the pipeline.

A pass reads the messages not flagged \\Seen, plus every message above the highest UID
seen so far (so mail that someone opened before the gateway did is not missed). A
message over settings.smtp.max_message_bytes (RFC822.SIZE, before fetching) is left in
place, flagged `$GatewayTooBig`, and reported once.

`start()` runs a thread that keeps one connection: a pass, then IDLE on the first folder
(re-issued every `idle_seconds`) or a wait of `poll_seconds`, then a pass again. After an
error it logs one line and reconnects after 1, 2, 4 ... 300 seconds. Its state is kept in
the State row "imap"; `status(session)` reads it for `gateway status`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from gateway import bounds, intake
from gateway.config import Settings
from gateway.db import session_scope
from gateway.models import InboundMessage, State

log = logging.getLogger(__name__)

STATE_KEY = "imap"
SEEN = b"\\Seen"
TOO_BIG = b"$GatewayTooBig"
BATCH = 200  # UIDs per FETCH of sizes and per database lookup
TOO_BIG_KEPT = 50  # reports kept in the status
CLAIM_SECONDS = 120  # a claim to move a message older than this is a gateway that died
_BYTES_REPR = re.compile(r"""\bb(['"])(.*?)\1""")


@dataclass
class Counts:
    """What a pass did: stored (new rows), known (stored before, now flagged), too_big
    (left in place) and failed (could not be stored: left untouched), with the error."""
    stored: int = 0
    known: int = 0
    too_big: int = 0
    failed: int = 0
    error: str | None = None


@dataclass
class DoorStatus:
    """The JSON kept under State "imap"; `folders` maps a mailbox to [uidvalidity, highest UID seen]."""
    state: str = "starting"
    last_pass_at: str | None = None
    last_counts: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: str | None = None
    consecutive_failures: int = 0
    next_attempt_at: str | None = None
    too_big: list[dict[str, Any]] = field(default_factory=list)
    folders: dict[str, list[int]] = field(default_factory=dict)


class StoreFailed(Exception):
    """The database did not store a message; it stays on the server for the next pass."""


@dataclass(frozen=True)
class Folder:
    """One selected folder: where its source keys start, and its UIDVALIDITY."""
    name: str
    prefix: str  # imap:<host>:<user>:<folder>:
    uidvalidity: int

    def key(self, uid: int) -> str:
        return f"{self.prefix}{self.uidvalidity}:{uid}"


def status(session: Session) -> dict[str, Any]:
    """The IMAP door's last recorded state, for `gateway status`; never writes."""
    row = session.get(State, STATE_KEY)
    if row is None:
        return {"state": "never run"}
    try:
        return dict(json.loads(row.value))
    except ValueError:
        return {"state": "unreadable status"}


def connect(settings: Settings) -> IMAPClient:
    """A logged-in client for settings.imap: implicit TLS, STARTTLS, or plain text.

    Raises LoginError when the server refuses the credentials, and OSError or
    IMAPClientError when it cannot be reached or will not do what is configured.
    """
    imap = settings.imap
    context = None
    if imap.ssl or imap.starttls:
        cafile = str(settings.path(imap.ca_file)) if imap.ca_file else None
        context = ssl.create_default_context(cafile=cafile)
    client = IMAPClient(imap.host, imap.port, ssl=imap.ssl, ssl_context=context,
                        timeout=imap.timeout_seconds)
    try:
        if imap.starttls and not imap.ssl:
            client.starttls(context)
        client.login(imap.username, imap.password)
    except BaseException:
        _close(client, polite=False)
        raise
    return client


class ImapDoor:
    """Read settings.imap's folders into `intake`; `run_once()` or `start()`/`stop()`."""

    def __init__(self, settings: Settings, engine: Engine, on_stored: Callable[[int], None], *,
                 first_delay: float = 1.0, max_delay: float = 300.0) -> None:
        self.settings, self.imap, self.engine, self.on_stored = settings, settings.imap, engine, on_stored
        self.first_delay, self.max_delay = first_delay, max_delay
        self.where = f"{self.imap.username}@{self.imap.host}:{self.imap.port}"
        self.status = self._load()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._client: IMAPClient | None = None
        self._claims: set[int] = set()  # rows this door holds the right to move
        self._thread: threading.Thread | None = None

    # -- running -------------------------------------------------------------------------

    def run_once(self) -> Counts:
        """Connect, make one pass over every folder, log out; record the outcome.

        Raises what `connect` raises, and OSError or IMAPClientError when the connection
        fails during the pass; a message that cannot be stored is counted, not raised.
        """
        try:
            with self._connection() as client:
                counts = self._pass(client)
            self._check(counts)
        except StoreFailed as exc:
            self._failed(exc, None)
        except Exception as exc:
            self._failed(exc, None)
            raise
        return counts

    def start(self) -> None:
        """Read the mailbox in a background thread until `stop()`."""
        if not (self.imap.ssl or self.imap.starttls) and self.imap.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("IMAP %s: no TLS, the password crosses the network in clear", self.where)
        self._thread = threading.Thread(target=self._serve, name="imap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread promptly: wake its wait, cut its connection, join it."""
        self.stopping.set()
        with self._lock:
            if self._client is not None:
                _cut(self._client)
        if self._thread is not None:
            self._thread.join(30)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                with self._connection() as client:
                    while not self.stopping.is_set():
                        self._check(self._pass(client))
                        self._wait(client)
            except Exception as exc:  # noqa: BLE001 - the door must outlive any failure
                if self.stopping.is_set():
                    break
                failures = self.status.consecutive_failures
                delay = min(self.first_delay * 2 ** min(failures, 30), self.max_delay)
                self._failed(exc, delay)
                self.stopping.wait(delay)
        self.status.state, self.status.next_attempt_at = "stopped", None
        self._save()

    @contextmanager
    def _connection(self) -> Iterator[IMAPClient]:
        client = connect(self.settings)
        with self._lock:
            self._client = client
        polite = True
        try:
            yield client
        except BaseException:
            polite = False
            raise
        finally:
            with self._lock:
                self._client = None
            _close(client, polite=polite and not self.stopping.is_set())

    def _wait(self, client: IMAPClient) -> None:
        """Wait for new mail: IDLE on the first folder when offered, else poll_seconds."""
        if self.stopping.is_set():
            return
        if not client.has_capability("IDLE"):
            self.stopping.wait(self.imap.poll_seconds)
            return
        folders = self.imap.all_folders
        selected = client.select_folder(folders[0])
        folder = self._folder(folders[0], selected)
        mark = self._mark(folder)
        if mark is None or int(selected.get(b"UIDNEXT", 0)) - 1 > mark:
            return  # mail came in (or the folder changed) since the pass read it
        limit = self.imap.idle_seconds if len(folders) == 1 else min(self.imap.idle_seconds,
                                                                     self.imap.poll_seconds)
        deadline = time.monotonic() + limit
        # Dovecot (and others) report mail delivered from now on; mail delivered in the
        # instant between the SELECT above and this IDLE is only seen at the next pass,
        # idle_seconds later at most.
        client.idle()
        self.status.state = "idle"
        self._save()
        while not self.stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            responses = client.idle_check(timeout=left)
            if any(r[1:2] in ((b"EXISTS",), (b"RECENT",)) for r in responses):
                break
            if any(r[:1] == (b"BYE",) for r in responses) or (
                    not responses and deadline - time.monotonic() > 0.05 and _hung_up(client)):
                raise ConnectionError("the server closed the connection")
        if not self.stopping.is_set():
            client.idle_done()

    # -- one pass ------------------------------------------------------------------------

    def _pass(self, client: IMAPClient) -> Counts:
        counts = Counts()
        for name in self.imap.all_folders:
            self._read_folder(client, name, counts)
            if counts.failed:
                break
        return counts

    def _read_folder(self, client: IMAPClient, name: str, counts: Counts) -> None:
        selected = client.select_folder(name)
        folder = self._folder(name, selected)
        mark = self._mark(folder)
        criteria: list[Any] = ["NOT", "DELETED", "UNSEEN"]
        if mark is not None:
            criteria = ["NOT", "DELETED", "OR", "UNSEEN", "UID", f"{mark + 1}:*"]
        uids = sorted(client.search(criteria))
        taggable = bool({b"\\*", TOO_BIG} & set(selected.get(b"PERMANENTFLAGS", ())))
        for start in range(0, len(uids), BATCH):
            batch = uids[start:start + BATCH]
            info = client.fetch(batch, ["RFC822.SIZE", "FLAGS"])
            try:
                known = self._known([folder.key(uid) for uid in batch])
            except Exception as exc:  # noqa: BLE001 - the database is down: try later
                counts.failed, counts.error = 1, f"{name}: {_text(exc)}"
                return
            done: dict[int, int] = {}  # UID -> the stored row
            for uid in (u for u in batch if u in info):  # others were expunged meanwhile
                try:
                    outcome, row = self._take(client, folder, uid, info[uid], known, taggable)
                except StoreFailed as exc:
                    counts.failed, counts.error = 1, str(exc)
                    break
                setattr(counts, outcome, getattr(counts, outcome) + 1)
                if row is not None and (self.imap.processed_folder
                                        or SEEN not in info[uid].get(b"FLAGS", ())):
                    done[uid] = row
            self._file(client, done)
            if counts.failed:
                return  # the highest UID seen stays where it was: nothing is skipped
        highest = max([mark or 0, int(selected.get(b"UIDNEXT", 1)) - 1, *uids])
        self.status.folders[folder.prefix.rstrip(":")] = [folder.uidvalidity, highest]

    def _take(self, client: IMAPClient, folder: Folder, uid: int, info: dict[bytes, Any],
              known: dict[str, int], taggable: bool) -> tuple[str, int | None]:
        """Store one message; return the Counts field it adds to and its row, if stored.
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
        try:
            before = self._stored_before(folder, raw)
            if before is not None:
                return "known", before
            stored = intake.store(self.engine, raw, door="imap", source_key=folder.key(uid))
        except Exception as exc:
            raise StoreFailed(f"{folder.name} UID {uid}: {_text(exc)}") from exc
        try:
            self.on_stored(stored.id)
        except Exception:
            # The message is committed: it is flagged and moved all the same.
            log.exception("on_stored(%s) failed", stored.id)
        return "stored", stored.id

    def _file(self, client: IMAPClient, stored: dict[int, int]) -> None:
        """Flag stored messages \\Seen, then move them to the processed folder if any.

        A MOVE is a copy then an expunge: two gateways moving one message at once would
        leave two copies. So each message is first claimed in the database, and a message
        claimed by another gateway is left to it (unless the claim is stale: it died).
        """
        moving = bool(self.imap.processed_folder)
        claimed = self._claim(set(stored.values())) if moving else set()
        uids = [uid for uid, row in stored.items() if not moving or row in claimed]
        try:
            if uids:
                self._flag_and_move(client, uids)
        except IMAPClientError as exc:
            if "EXPUNGEISSUED" not in str(exc).upper():
                raise
            # Another gateway filed some of them first: file what is left.
            client.noop()
            left = client.search(["UID", ",".join(map(str, uids))])
            if left:
                self._flag_and_move(client, left)
        finally:
            self._release(claimed)

    def _flag_and_move(self, client: IMAPClient, uids: list[int]) -> None:
        client.add_flags(uids, [SEEN], silent=True)
        target = self.imap.processed_folder
        if not target:
            return
        if not client.folder_exists(target):
            try:
                client.create_folder(target)
            except IMAPClientError as exc:
                if "ALREADYEXISTS" not in str(exc).upper():  # else another gateway made it
                    raise
        if client.has_capability("MOVE"):
            client.move(uids, target)
            return
        client.copy(uids, target)
        client.delete_messages(uids, silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            client.expunge()

    def _too_big(self, client: IMAPClient, folder: Folder, uid: int, size: int,
                 flags: tuple[bytes, ...], taggable: bool) -> None:
        key = folder.key(uid)
        if TOO_BIG in flags or any(r.get("key") == key for r in self.status.too_big):
            return  # reported already
        log.warning("IMAP %s: message UID %s in %s is %s bytes, over the %s-byte limit: left in place%s",
                    self.where, uid, folder.name, size, self.settings.smtp.max_message_bytes,
                    f", flagged {TOO_BIG.decode()}" if taggable else "")
        if taggable:
            client.add_flags([uid], [TOO_BIG], silent=True)
        report = {"key": key, "folder": folder.name, "uid": uid, "size": size, "at": _now()}
        self.status.too_big = [*self.status.too_big, report][-TOO_BIG_KEPT:]

    # -- the database --------------------------------------------------------------------

    def _known(self, keys: list[str]) -> dict[str, int]:
        """The source keys among `keys` already stored, with their rows."""
        with session_scope(self.engine) as session:
            return {key: row for key, row in session.execute(
                select(InboundMessage.source_key, InboundMessage.id)
                .where(InboundMessage.source_key.in_(keys)))}

    def _stored_before(self, folder: Folder, raw: bytes) -> int | None:
        """The row of these very bytes stored from this folder under another UIDVALIDITY."""
        current = f"{folder.prefix}{folder.uidvalidity}:"
        with session_scope(self.engine) as session:
            return session.scalar(
                select(InboundMessage.id).where(
                    InboundMessage.digest == hashlib.sha256(raw).hexdigest(),
                    InboundMessage.source_key.startswith(folder.prefix, autoescape=True),
                    ~InboundMessage.source_key.startswith(current, autoescape=True))
                .order_by(InboundMessage.id).limit(1))

    def _claim(self, rows: set[int]) -> set[int]:
        """The stored messages this door may move now (see `_file`)."""
        for row in sorted(rows - self._claims):
            key, now = f"imap-moving:{row}", time.time()
            try:
                with session_scope(self.engine) as session:
                    held = session.get(State, key)
                    if held is None:
                        session.add(State(key=key, value=repr(now)))
                    elif now - float(held.value) < CLAIM_SECONDS or session.execute(
                            update(State).where(State.key == key, State.value == held.value)
                            .values(value=repr(now))).rowcount != 1:  # type: ignore[attr-defined]
                        continue
                self._claims.add(row)
            except Exception:  # noqa: BLE001 - not claimed: the next pass tries again
                continue
        return rows & self._claims

    def _release(self, rows: set[int]) -> None:
        if not rows:
            return
        try:
            with session_scope(self.engine) as session:
                session.execute(delete(State).where(State.key.in_([f"imap-moving:{r}" for r in rows])))
            self._claims -= rows
        except Exception as exc:  # noqa: BLE001 - a stale claim only delays the next move
            log.debug("could not release IMAP claims: %s", exc)

    def _folder(self, name: str, selected: dict[bytes, Any]) -> Folder:
        # Bounded so that every source key of the folder fits its column, the same for all.
        prefix = bounds.key(f"imap:{self.imap.host}:{self.imap.username}:{name}", bounds.SOURCE_KEY - 41)
        return Folder(name, prefix + ":", int(selected[b"UIDVALIDITY"]))

    def _mark(self, folder: Folder) -> int | None:
        """The highest UID a pass has seen in this folder, None when unknown or outdated."""
        seen = self.status.folders.get(folder.prefix.rstrip(":"))
        return seen[1] if seen and seen[0] == folder.uidvalidity else None

    # -- status --------------------------------------------------------------------------

    def _check(self, counts: Counts) -> None:
        """Record a pass; raise StoreFailed when a message could not be stored."""
        self.status.last_pass_at = _now()
        self.status.last_counts = {k: v for k, v in asdict(counts).items() if k != "error"}
        if counts.failed:
            raise StoreFailed(f"could not store {counts.error}")
        self.status.state, self.status.consecutive_failures = "connected", 0
        self.status.next_attempt_at = None
        self._save()

    def _failed(self, exc: Exception, delay: float | None) -> None:
        self.status.consecutive_failures += 1
        state, text = _describe(exc)
        self.status.state, self.status.last_error, self.status.last_error_at = state, text, _now()
        self.status.next_attempt_at = _now(delay) if delay is not None else None
        expected = isinstance(exc, (StoreFailed, OSError, IMAPClientError))
        retry = f"; next attempt in {delay:g} s" if delay is not None else ""
        log.warning("IMAP %s: %s%s", self.where, text, retry,
                    exc_info=not expected and self.status.consecutive_failures == 1)
        self._save()

    def _load(self) -> DoorStatus:
        """What an earlier run left: the highest UIDs seen and the reports made."""
        try:
            with session_scope(self.engine) as session:
                kept = status(session)
        except Exception:  # noqa: BLE001 - the database may be down at start; it will say so
            kept = {}
        return DoorStatus(too_big=list(kept.get("too_big", [])), folders=dict(kept.get("folders", {})))

    def _save(self) -> None:
        value = json.dumps(asdict(self.status))
        try:
            with session_scope(self.engine) as session:
                row = session.get(State, STATE_KEY)
                if row is None:
                    session.add(State(key=STATE_KEY, value=value))
                else:
                    row.value = value
        except Exception as exc:  # noqa: BLE001 - a status must never stop the door
            log.debug("could not save the IMAP status: %s", exc)


def _describe(exc: Exception) -> tuple[str, str]:
    """A state for `gateway status` and one sentence for the log."""
    if isinstance(exc, LoginError):
        return "login refused", f"login refused: {_text(exc)}"
    if isinstance(exc, StoreFailed):
        return "could not store", str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "connection failed", f"server certificate not trusted: {exc.verify_message}"
    if isinstance(exc, (OSError, IMAPClient.AbortError)):
        return "connection failed", f"connection failed or lost: {_text(exc) or type(exc).__name__}"
    if isinstance(exc, IMAPClientError):
        return "server refused", f"server refused: {_text(exc)}"
    return "error", f"unexpected {type(exc).__name__}: {exc}"


def _text(exc: BaseException) -> str:
    """The first line of `exc`'s message, without the b'...' imaplib leaves around replies."""
    lines = str(exc).strip().splitlines()
    return _BYTES_REPR.sub(r"\2", lines[0] if lines else "")


def _now(later: float = 0.0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=later)).isoformat(timespec="seconds")


def _hung_up(client: IMAPClient) -> bool:
    """True when the server has closed the connection (a read would find its end)."""
    try:
        return socket.socket.recv(client.socket(), 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _cut(client: IMAPClient) -> None:
    """Shut the connection down from another thread: its blocked read returns at once."""
    try:
        # The plain socket's shutdown: SSLSocket's own is not safe beside a reader thread.
        socket.socket.shutdown(client.socket(), socket.SHUT_RDWR)
    except OSError:
        pass


def _close(client: IMAPClient, polite: bool) -> None:
    """Log out (polite) or just close; never raises, always releases the socket."""
    if polite:
        try:
            client.logout()
            return
        except Exception:  # noqa: BLE001 - closed below
            pass
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001 - the socket is closed by imaplib all the same
        pass
