"""The SMTP and LMTP door: accept mail for the support address, store it, then answer.

A message is answered `250` only once `intake.store` has committed it, and `451` when
storing fails, so the sending MTA keeps it and tries again. The door does nothing else:
`on_stored(id)` wakes whoever runs the pipeline.

aiosmtpd runs the server in its own thread and event loop; the messages whose DATA ended
in one turn of that loop are stored together right after it (group commit,
receive/group.py). A new transaction waits at `MAIL FROM` while messages already received
are not committed yet (`GroupWriter.room`): under load the door finishes what it holds
before it takes more, and a sender waits before its data, not after it.
"""
from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, AnyStr

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine

from gateway import intake
from gateway.config import Settings
from gateway.receive.data import LeanData
from gateway.receive.group import GroupWriter
from gateway.worker import Storing

log = logging.getLogger(__name__)

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"
TOO_BIG = "552 5.3.4 Message too big for system"
STORE_SWITCH_SECONDS = 0.0005


class Door:
    """The aiosmtpd handler: refuses other recipients, stores each message once."""

    def __init__(self, settings: Settings, engine: Engine,
                 on_stored: Callable[[int], None], storing: Storing | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.on_stored = on_stored
        self.writer = GroupWriter(engine, storing or Storing())

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        """aiosmtpd's own answer, once the messages received before are committed."""
        await self.writer.room()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not self.settings.support.mailbox.matches(address):
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message (group commit, receive/group.py); answer 250 only once it is committed."""
        raw = _raw(envelope)
        # aiosmtpd already refuses what goes over data_size_limit while receiving; this
        # guards the limit should the server ever be built without it.
        if len(raw) > self.settings.smtp.max_message_bytes:
            return TOO_BIG
        sender = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        door = "lmtp" if isinstance(server, LMTP) else "smtp"
        try:
            stored = await self.writer.submit(intake.Incoming(raw, door, sender, list(envelope.rcpt_tos)))
        except Exception:
            log.exception("could not store a message from <%s> to %s", sender, envelope.rcpt_tos)
            return TEMPORARY_FAILURE
        try:
            self.on_stored(stored.id)
        except Exception:
            # The message is committed: saying 451 now would only make a duplicate.
            log.exception("on_stored(%s) failed", stored.id)
        return f"250 2.0.0 Ok: queued as {stored.id}"

    def close(self) -> None:
        """Store what waits."""
        self.writer.close()


def _raw(envelope: Envelope) -> bytes:
    content: Any = envelope.original_content or envelope.content or b""
    if isinstance(content, bytearray):  # gathered by LeanData: copied once, then let go
        raw = bytes(content)
        content.clear()
        return raw
    return content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")


class LeanLMTP(LeanData, LMTP):
    """LMTP with DATA gathered in one buffer."""


class PerRecipientLMTP(LeanLMTP):
    """LMTP that answers DATA once per accepted recipient, as RFC 2033 requires.

    aiosmtpd's LMTP class only swaps the greeting: whatever answers DATA (our handler, or
    aiosmtpd itself for a message over the size limit or a line too long) is sent once,
    as in SMTP, and a client with several recipients would wait for the missing replies.
    This class repeats the final DATA reply for every recipient accepted at RCPT time.
    The message is stored once, so every recipient has the same outcome.
    """

    _replies_due = 0

    async def push(self, status: AnyStr) -> None:
        count, self._replies_due = self._replies_due, 0
        if count > 1 and isinstance(status, str):
            status = "\r\n".join([status] * count)
        await super().push(status)
        if isinstance(status, str) and status.startswith("354") and self.envelope is not None:
            # The next reply is the one that ends DATA; the envelope is reset before it.
            self._replies_due = len(self.envelope.rcpt_tos)


class DoorController(Controller):
    """aiosmtpd's threaded controller, for SMTP or LMTP, that fails fast and stops cleanly."""

    def __init__(self, handler: Door, *, lmtp: bool, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.lmtp = lmtp
        self.switch_before: float | None = None

    def factory(self) -> SMTP:
        protocol = PerRecipientLMTP if self.lmtp else LeanData
        return protocol(self.handler, loop=self.loop, **self.SMTP_kwargs)

    def start(self) -> None:
        if self.handler.engine.dialect.name == "sqlite":
            # The door's store thread lets go of the interpreter in each SQLite step and in
            # the commit, and waits for it after each while the loop serves the other
            # sessions: 5 ms at most by default, 0.5 ms with this (receive/group.py). For the
            # whole process while the door is open; `stop()` puts the interval back.
            self.switch_before = sys.getswitchinterval()
            sys.setswitchinterval(STORE_SWITCH_SECONDS)
        try:
            super().start()
        except BaseException:
            # The port may be taken: aiosmtpd leaves its loop open when it cannot bind.
            self.stop(no_assert=True)
            raise

    def _run(self, ready_event: threading.Event) -> None:
        try:
            super()._run(ready_event)
        finally:
            # When binding fails aiosmtpd never sets the event and start() waits its
            # whole ready_timeout; waking it lets _trigger_server raise the error at once.
            ready_event.set()

    def _trigger_server(self) -> None:
        if self._thread_exception is not None:
            raise self._thread_exception
        super()._trigger_server()  # type: ignore[no-untyped-call]

    @property
    def serving(self) -> bool:
        """The door accepts connections: its server is open and its thread alive."""
        thread = getattr(self, "_thread", None)
        return (self.server is not None and self.server.is_serving()
                and thread is not None and thread.is_alive())

    def stop(self, no_assert: bool = False) -> None:
        """Stop the loop and its thread (open sessions are cut), then the door's workers."""
        if not self.loop.is_closed():
            super().stop(no_assert)
            if not self.loop.is_closed():
                self.loop.close()
        self.handler.close()
        if self.switch_before is not None:
            sys.setswitchinterval(self.switch_before)
            self.switch_before = None


def start(settings: Settings, engine: Engine, on_stored: Callable[[int], None],
          storing: Storing | None = None) -> DoorController:
    """Start the door on settings.smtp.host/port in its own thread; `controller.stop()` ends it.

    Speaks LMTP when settings.smtp.lmtp is set. Offers no AUTH and no TLS: the door is
    meant to sit behind the organisation's MTA, on loopback or a private network.
    """
    lmtp = settings.smtp.lmtp
    controller = DoorController(
        Door(settings, engine, on_stored, storing), lmtp=lmtp,
        hostname=settings.smtp.host, port=settings.smtp.port,
        server_hostname=settings.support.mailbox.domain or None,
        ident="LMTP support gateway" if lmtp else "ESMTP support gateway",
        data_size_limit=settings.smtp.max_message_bytes, decode_data=False)
    controller.start()
    return controller
