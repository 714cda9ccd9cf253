"""Waiting for new mail between passes: IDLE on the first folder when the server offers it
(re-issued every idle_seconds), else a plain wait of poll_seconds."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from imapclient import IMAPClient

from gateway.config import ImapSettings
from gateway.receive.imap.connection import hung_up
from gateway.receive.imap.keys import Folder
from gateway.receive.imap.state import DoorStatus

NEW_MAIL = ((b"EXISTS",), (b"RECENT",))


def wait(client: IMAPClient, imap: ImapSettings, status: DoorStatus, stopping: threading.Event,
         idling: Callable[[], None]) -> None:
    """Return when new mail may have come, the wait is over, or `stopping` is set; `idling()`
    is called once IDLE runs. Raises ConnectionError when the server hangs up during IDLE,
    and what IMAPClient raises."""
    if stopping.is_set():
        return
    if not client.has_capability("IDLE"):
        stopping.wait(imap.poll_seconds)
        return
    if _mail_since_pass(client, imap, status):
        return
    # With several folders only the first is watched: the others are read every poll_seconds.
    limit = imap.idle_seconds if len(imap.all_folders) == 1 else min(imap.idle_seconds, imap.poll_seconds)
    deadline = time.monotonic() + limit
    # Dovecot (and others) report mail delivered from now on; mail delivered in the instant
    # between the SELECT in _mail_since_pass and this IDLE is only seen at the next pass,
    # idle_seconds later at most.
    client.idle()
    idling()
    _idle_until(client, deadline, stopping)
    if not stopping.is_set():
        client.idle_done()


def _mail_since_pass(client: IMAPClient, imap: ImapSettings, status: DoorStatus) -> bool:
    """True when mail came into the first folder (or the folder changed) since the pass read it."""
    name = imap.all_folders[0]
    selected = client.select_folder(name)
    mark = status.mark(Folder.selected(imap, name, selected))
    return mark is None or int(selected.get(b"UIDNEXT", 0)) - 1 > mark


def _idle_until(client: IMAPClient, deadline: float, stopping: threading.Event) -> None:
    while not stopping.is_set() and (left := deadline - time.monotonic()) > 0:
        responses = client.idle_check(timeout=left)
        if any(r[1:2] in NEW_MAIL for r in responses):
            return
        # An idle_check that returns early with nothing may be a connection the server closed.
        if any(r[:1] == (b"BYE",) for r in responses) or (
                not responses and deadline - time.monotonic() > 0.05 and hung_up(client)):
            raise ConnectionError("the server closed the connection")
