"""The connection to the IMAP server: log in (implicit TLS, STARTTLS or plain text), notice
that the server hung up, cut the line from another thread, and close it."""
from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from imapclient import IMAPClient

from gateway.config import ImapSettings, Settings

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def where(imap: ImapSettings) -> str:
    """The mailbox as the log names it: user@host:port."""
    return f"{imap.username}@{imap.host}:{imap.port}"


def in_clear(imap: ImapSettings) -> bool:
    """True when the password would cross the network unencrypted (no TLS, not loopback)."""
    return not (imap.ssl or imap.starttls) and imap.host not in LOOPBACK


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
        close(client, polite=False)
        raise
    return client


class Line:
    """A door's one open connection, kept where `cut()` can reach it from another thread."""

    def __init__(self, settings: Settings, stopping: threading.Event) -> None:
        self.settings, self.stopping = settings, stopping
        self._lock = threading.Lock()
        self._client: IMAPClient | None = None

    @contextmanager
    def open(self) -> Iterator[IMAPClient]:
        """Connect (raising what `connect` raises); log out at the end, or just close after
        an error or once the door is stopping."""
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
            close(client, polite=polite and not self.stopping.is_set())

    def cut(self) -> None:
        """Shut the open connection down, if any: its blocked read returns at once."""
        with self._lock:
            if self._client is not None:
                _shutdown(self._client)


def hung_up(client: IMAPClient) -> bool:
    """True when the server has closed the connection (a read would find its end)."""
    try:
        return socket.socket.recv(client.socket(), 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def close(client: IMAPClient, polite: bool) -> None:
    """Log out (polite) or just close; never raises, always releases the socket."""
    if polite:
        try:
            client.logout()
            return
        except Exception:  # noqa: BLE001 - closed below, whatever went wrong
            pass
    with contextlib.suppress(Exception):  # the socket is closed by imaplib all the same
        client.shutdown()


def _shutdown(client: IMAPClient) -> None:
    # The plain socket's shutdown: SSLSocket's own is not safe beside a reader thread.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(client.socket(), socket.SHUT_RDWR)
