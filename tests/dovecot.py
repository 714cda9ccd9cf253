"""A throwaway Dovecot IMAP server for the tests, and a TCP relay that the tests can cut.

`Dovecot(workdir, port)` writes a configuration (mail in mail/, log in dovecot.log,
runtime files in run/) under `workdir`, or as root under a folder of its own that
`close()` removes; it listens on 127.0.0.1 only. `start()`, `stop()` and `restart()` run
it in the foreground as a child process. `add_user()` gives a new, empty `Mailbox` (a
user with a plaintext password), so tests can share one server. With `tls_port` it also
offers implicit TLS on that port, and STARTTLS on the plain one, with a self-signed
certificate for 127.0.0.1 made by openssl.

`CutRelay` forwards a loopback port to another and closes a connection on purpose, e.g.
in the middle of a FETCH, to show what the door does when the network fails.
"""
from __future__ import annotations

import grp
import os
import pwd
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
USERS = 200


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing() -> str | None:
    """Why Dovecot cannot run here, or None when it can."""
    if not os.access(DOVECOT, os.X_OK):
        return f"Dovecot is not installed ({DOVECOT}); apt-get install dovecot-imapd"
    return None


def version() -> tuple[int, ...]:
    out = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(p) for p in out.split()[0].split(".")[:2])


CONFIG = """\
# Throwaway Dovecot for the gateway's tests, written by tests/dovecot.py.
instance_name = gw-test-{port}
base_dir = {root}/run
state_dir = {root}/state
listen = 127.0.0.1
protocols = imap
log_path = {root}/dovecot.log
default_login_user = {login_user}
default_internal_user = {internal_user}
first_valid_uid = 1
first_valid_gid = 1
{cleartext}
auth_mechanisms = plain login
# A refused login is answered at once: the tests count attempts, not seconds.
auth_failure_delay = 0
mail_location = maildir:{root}/mail/%u
{ssl}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No growing delay after refused logins: the tests count the door's own retries.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


class Dovecot:
    """One Dovecot instance on 127.0.0.1:`port` (and implicit TLS on `tls_port`)."""

    def __init__(self, workdir: Path, port: int, tls_port: int = 0) -> None:
        self.workdir, self.port, self.tls_port = workdir, port, tls_port
        self.root = workdir
        if os.geteuid() == 0:
            # As root, Dovecot gives the mail to nobody, who must be able to reach it; pytest's
            # folders are private to root (every pytest run makes them so again), so the
            # server lives in a folder of its own under /tmp, removed by close().
            self.root = Path(tempfile.mkdtemp(prefix="gw-dovecot-"))
            self.root.chmod(0o755)
        self.process: subprocess.Popen[bytes] | None = None
        self.certificate = self.root / "cert.pem"
        self._configure()

    def _configure(self) -> None:
        if os.geteuid() == 0:
            # Dovecot refuses to give mail to root.
            login_user, internal_user = "dovenull", "dovecot"
            uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
        else:
            login_user = internal_user = pwd.getpwuid(os.geteuid()).pw_name
            uid, gid = os.geteuid(), os.getegid()
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        os.chown(self.root / "mail", uid, gid)
        # Dovecot rereads its passwd-file at most once a second: every user exists from the start.
        (self.root / "passwd").write_text("".join(
            f"{user}:{{PLAIN}}{password}::::::\n" for user, password in map(_user, range(1, USERS + 1))))
        self._users = 0
        cleartext = ("auth_allow_cleartext = yes" if version() >= (2, 4)
                     else "disable_plaintext_auth = no")
        ssl = "ssl = no"
        if self.tls_port:
            self._make_certificate()
            ssl = (f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{self.root / 'key.pem'}")
        (self.root / "dovecot.conf").write_text(CONFIG.format(
            root=self.root, port=self.port, tls_port=self.tls_port, login_user=login_user,
            internal_user=internal_user, uid=uid, gid=gid, cleartext=cleartext, ssl=ssl))

    def _make_certificate(self) -> None:
        subprocess.run(
            [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(self.root / "key.pem"), "-out", str(self.certificate)],
            check=True, capture_output=True)

    def start(self) -> None:
        """Start Dovecot and return once it greets on its port; raise with its log if not."""
        with (self.root / "stderr.log").open("ab") as stderr:
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True)  # its own process group, so stop() reaches every child
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"dovecot exited at start:\n{self.log('stderr.log')}{self.log()}")
            if _greets(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on port {self.port}\n{self.log()}")

    def stop(self) -> None:
        """Stop Dovecot and all its processes at once, as a crash or a reboot would: every
        open IMAP connection is cut and the port is free when this returns."""
        if self.process is None:
            return
        group = self.process.pid
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()
        self.process = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return  # no process of the group is left
            time.sleep(0.02)
        os.killpg(group, signal.SIGKILL)

    def close(self) -> None:
        """Stop, keep the log in `workdir`, and remove the server's own folder if it has one."""
        self.stop()
        if self.root != self.workdir:
            if (self.root / "dovecot.log").exists():
                shutil.copy(self.root / "dovecot.log", self.workdir / "dovecot.log")
            shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self, name: str = "dovecot.log") -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def add_user(self) -> Mailbox:
        """A user of its own with an empty mailbox."""
        self._users += 1
        if self._users > USERS:
            raise RuntimeError(f"only {USERS} users in the passwd-file")
        return Mailbox(self, *_user(self._users))


def _user(n: int) -> tuple[str, str]:
    return f"support{n}", f"pass-{n}-word"


class Mailbox:
    """One user's mailbox on a `Dovecot`, reached with a client of its own."""

    def __init__(self, server: Dovecot, user: str, password: str) -> None:
        self.server, self.user, self.password = server, user, password

    @contextmanager
    def client(self) -> Iterator[IMAPClient]:
        """A logged-in client on the plain port, for the test's own appends and checks."""
        with IMAPClient("127.0.0.1", self.server.port, ssl=False, timeout=15) as client:
            client.login(self.user, self.password)
            yield client

    def append(self, folder: str, raw: bytes, flags: tuple[bytes, ...] = ()) -> int:
        """Put `raw` into `folder` (created when missing); return its UID."""
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            answer = client.append(folder, raw, flags)
        # "[APPENDUID <uidvalidity> <uid>] Append completed."
        return int(answer.split(b"]")[0].split()[-1])

    def messages(self, folder: str) -> dict[int, set[bytes]]:
        """UID -> flags of every message in `folder` ({} when the folder does not exist)."""
        with self.client() as client:
            if not client.folder_exists(folder):
                return {}
            client.select_folder(folder, readonly=True)
            found = client.search(["ALL"])
            flags = client.get_flags(found) if found else {}
        return {uid: set(f) - {b"\\Recent"} for uid, f in flags.items()}

    def uidvalidity(self, folder: str) -> int:
        with self.client() as client:
            return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(64).startswith(b"* OK")
    except OSError:
        return False


class CutRelay:
    """Forward 127.0.0.1:`port` to 127.0.0.1:`upstream`; cut a connection on demand.

    `cut_after(pattern)` arms a one-shot cut: the first time the server sends `pattern`,
    the relay passes on what comes before it and a few bytes more, then closes both
    sides of that connection. `cuts` counts the cuts made.
    """

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self.pattern: bytes | None = None
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", port))
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._peers: dict[socket.socket, tuple[socket.socket, bool]] = {}  # sock -> (peer, from server)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="cut-relay", daemon=True)
        self._thread.start()

    def cut_after(self, pattern: bytes) -> None:
        self.pattern = pattern

    def close(self) -> None:
        self._stopping = True
        self._wake_w.send(b"x")
        self._thread.join(10)
        for sock in list(self._peers):
            self._drop(sock)
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(1.0):
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock is not self._wake_r and sock in self._peers:
                    self._forward(sock)  # type: ignore[arg-type]

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        try:
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
        except OSError:
            client.close()
            return
        self._peers[client], self._peers[server] = (server, False), (client, True)
        for sock in (client, server):
            self._selector.register(sock, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        peer, from_server = self._peers[sock]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        cut = from_server and self.pattern is not None and self.pattern in data
        if cut:
            assert self.pattern is not None
            data = data[:data.find(self.pattern) + len(self.pattern) + 8]
            self.pattern = None
            self.cuts += 1
        try:
            peer.sendall(data)
        except OSError:
            cut = True
        if cut:
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        peer, _ = self._peers.pop(sock, (None, False))
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
