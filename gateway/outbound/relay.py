"""The way out of the gateway: one connection to the relay (or the Maildir) for a whole drain.

`Transport.send` hands one message to one recipient. Over SMTP the connection is opened at
the first message and kept for the next ones; one the relay dropped meanwhile (an idle
timeout, a restart, a 421) is opened again. A refusal of one recipient (4xx or 5xx) ends
that transaction only: the next message goes through the same connection. Never touches
the database.
"""
from __future__ import annotations

import mailbox
import smtplib
import ssl
from email.message import EmailMessage
from types import TracebackType

from gateway.config import Settings

TIMEOUT_SECONDS = 30
# The relay's answers that refuse a sender, a recipient or a message, as smtplib raises them.
REFUSALS = (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused)


class PermanentFailure(Exception):
    """The relay refused the recipient or the message for good (5xx); `at_rcpt` when it
    refused the recipient's address itself (RCPT TO), which says the address is dead."""

    def __init__(self, reply: str, at_rcpt: bool = False) -> None:
        super().__init__(reply)
        self.at_rcpt = at_rcpt


class TemporaryFailure(OSError):
    """The relay said 4xx: try again later. Its text is the relay's reply."""


def reply(code: int, text: bytes | str) -> str:
    """A server's reply as it was said: "550 5.1.1 <x@y>: Recipient address rejected"."""
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return " ".join(f"{code} {said}".split())


class Transport:
    """Sends messages for one drain; use it as a context manager so the connection is closed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def send(self, msg: EmailMessage, recipient: str) -> None:
        """Hand `msg` to the relay for `recipient`. Raises PermanentFailure on a 5xx,
        TemporaryFailure on a 4xx, and OSError (smtplib's errors among them) when it may
        work later."""
        if self.settings.outbound.transport == "maildir":
            self._to_maildir(msg, recipient)
            return
        try:
            self._to_relay(msg, recipient)
        except smtplib.SMTPRecipientsRefused as exc:
            said = [reply(code, text) for code, text in exc.recipients.values()]
            if exc.recipients and all(500 <= code < 600 for code, _ in exc.recipients.values()):
                raise PermanentFailure("; ".join(said), at_rcpt=True) from exc
            raise TemporaryFailure("; ".join(said)) from exc
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:
                raise PermanentFailure(reply(exc.smtp_code, exc.smtp_error)) from exc
            raise TemporaryFailure(reply(exc.smtp_code, exc.smtp_error)) from exc

    def close(self) -> None:
        """Say goodbye to the relay, if connected; never raises."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def _to_relay(self, msg: EmailMessage, recipient: str) -> None:
        kept = self._smtp is not None and self._smtp.sock is not None
        try:
            self._once(msg, recipient)
        except REFUSALS:
            raise
        except OSError:  # smtplib's other errors are OSErrors too
            if not kept:
                raise
            # A connection kept from an earlier message was closed by the relay meanwhile:
            # once more on a new one. Had the relay taken the message just before dropping
            # the connection, this sends it twice: at least once, never zero times.
            self._once(msg, recipient)

    def _once(self, msg: EmailMessage, recipient: str) -> None:
        try:
            self._connection().send_message(msg, from_addr=self.settings.support.address, to_addrs=[recipient])
        except REFUSALS:
            # smtplib reset the transaction (or closed the connection on a 421): the
            # connection serves the next message, or is opened again for it.
            raise
        except OSError:
            # Dropped midway: whatever state the connection is in, it is not used again.
            self._drop()
            raise

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None and self._smtp.sock is not None:
            return self._smtp
        self._drop()
        out = self.settings.outbound
        smtp = smtplib.SMTP(out.host, out.port, timeout=TIMEOUT_SECONDS)
        try:
            if out.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if out.username:
                smtp.login(out.username, out.password)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _to_maildir(self, msg: EmailMessage, recipient: str) -> None:
        """Write the copy for `recipient`, its first line `Delivered-To:` naming whose copy
        it is, as a mail server's local delivery does (all copies share one Message-ID)."""
        folder = self.settings.path(self.settings.outbound.maildir)
        # Maildir(create=True) makes the last folder only: "var/sent" needs "var" first.
        folder.parent.mkdir(parents=True, exist_ok=True)
        box = mailbox.Maildir(folder, create=True)
        try:
            stamp = "Delivered-To: " + "".join(recipient.split()) + "\n"
            box.add(stamp.encode("utf-8") + msg.as_bytes())
        finally:
            box.close()
