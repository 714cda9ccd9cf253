"""A throwaway Postfix for the tests, set up in front of the gateway as an administrator does.

`Postfix(port)` takes a folder of its own in /tmp; `configure(domains, main, services,
tables)` writes its configuration there (etc/ holds main.cf, master.cf and the lookup
tables, spool/ the queue, data/ Postfix's locks, postfix.log its log), with smtpd on
127.0.0.1:`port` only: `main` adds main.cf lines, `services` master.cf entries and
`tables` hash: tables (each one `postmap`ped). `start()` runs `postfix -c etc start` and
returns once smtpd greets; `stop()` runs `postfix -c etc stop` and returns once every
Postfix process of the instance has left; `close()` also removes the folder. `send()`
submits a message over SMTP, `queue()` reads `postqueue -j`, `flush()` is `postqueue -f`,
`purge()` deletes every queued message. `wait()` awaits a condition.

Postfix runs as root only: its master gives up its rights to `postfix` for the daemons
and to the pipe's `user=`, which may not be root. `PipeUser` is that user (`nobody`), and
`pipe_command()` gives a `gateway` command it can run (see there why this takes care).
As root, `postfix -c DIR` needs no `alternate_config_directories` in the default main.cf
(only set-gid commands run by other users do), so the tests leave /etc/postfix alone.
"""
from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"
POSTSUPER = shutil.which("postsuper") or "/usr/sbin/postsuper"
POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"
PROJECT_DIR = Path(__file__).resolve().parent.parent
DEADLINE = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing() -> str | None:
    """Why Postfix cannot run here, or None when it can."""
    if not os.access(POSTFIX, os.X_OK):
        return (f"Postfix is not installed ({POSTFIX}); apt-get install postfix "
                "(debconf postfix/main_mailer_type: No configuration)")
    if os.geteuid() != 0:
        return "Postfix runs as root only: run the Postfix tests as root"
    return None


MAIN_CF = """\
# Throwaway Postfix for the gateway's tests, written by tests/postfix.py.
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.{domain}
mydomain = {domain}
myorigin = $mydomain
mydestination = $myhostname, localhost, {domains}
mynetworks = 127.0.0.0/8
# The instance has no aliases file of its own.
alias_maps =
alias_database =
# Anything bound elsewhere (a bounce to a customer's domain) is dropped: nothing leaves.
default_transport = discard:no mail leaves a test instance
relay_transport = $default_transport
biff = no
"""

# Every service runs outside a chroot: the instance's queue is no chroot jail.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
local     unix  - n n -     - local
lmtp      unix  - - n -     - lmtp
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """One Postfix instance with smtpd on 127.0.0.1:`port` only."""

    def __init__(self, port: int) -> None:
        self.port = port
        # A folder of its own under /tmp: the pipe's user must reach what lives in it, and
        # pytest's folders are private to root.
        self.root = Path(tempfile.mkdtemp(prefix="gw-postfix-"))
        self.root.chmod(0o755)
        self.etc = self.root / "etc"
        self.master_pid: int | None = None

    def configure(self, domains: list[str], main: dict[str, str] | None = None,
                  services: str = "", tables: dict[str, str] | None = None) -> None:
        """Write main.cf (final destination for `domains`, plus `main`), master.cf (smtpd
        on the port, plus `services`) and the hash: `tables`, named by file name."""
        for sub in ("etc", "spool", "data"):
            (self.root / sub).mkdir(exist_ok=True)
        postfix = pwd.getpwnam("postfix")
        os.chown(self.root / "data", postfix.pw_uid, postfix.pw_gid)
        lines = "".join(f"{key} = {value}\n" for key, value in (main or {}).items())
        (self.etc / "main.cf").write_text(MAIN_CF.format(
            root=self.root, domain=domains[0], domains=", ".join(domains)) + lines)
        (self.etc / "master.cf").write_text(MASTER_CF.format(port=self.port) + services)
        for name, text in (tables or {}).items():
            (self.etc / name).write_text(text)
            _run([POSTMAP, "-c", str(self.etc), f"hash:{self.etc / name}"])

    def start(self) -> None:
        """Start the instance; return once smtpd greets, or raise with its log."""
        _run([POSTFIX, "-c", str(self.etc), "start"], self.log)
        self.master_pid = int((self.root / "spool" / "pid" / "master.pid").read_text().split()[0])
        if wait(lambda: _greets(self.port)):
            return
        self.stop()
        raise RuntimeError(f"postfix did not greet on port {self.port}\n{self.log()}")

    def stop(self) -> None:
        """Stop the instance; return once none of its processes is left (a pipe command
        still running is ended with them)."""
        if self.master_pid is None:
            return
        group, self.master_pid = self.master_pid, None  # the master leads its own session
        subprocess.run([POSTFIX, "-c", str(self.etc), "stop"], capture_output=True, check=False)
        if not wait(lambda: not _alive(group), DEADLINE):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            wait(lambda: not _alive(group), DEADLINE)

    def close(self) -> None:
        """Stop, then remove the instance's folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def send(self, msg: EmailMessage, sender: str, recipients: list[str]) -> None:
        """Submit `msg` over SMTP with this envelope ("" sends `MAIL FROM:<>`)."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=DEADLINE) as smtp:
            smtp.send_message(msg, from_addr=sender, to_addrs=recipients)

    def queue(self) -> list[dict[str, object]]:
        """The queued messages as `postqueue -j` gives them: queue_name, queue_id, sender,
        recipients (address, delay_reason)."""
        out = _run([POSTQUEUE, "-c", str(self.etc), "-j"], self.log)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def flush(self) -> None:
        """`postqueue -f`: try every queued message again now."""
        _run([POSTQUEUE, "-c", str(self.etc), "-f"], self.log)

    def purge(self) -> None:
        """Delete every queued message, so that a test starts with an empty queue."""
        _run([POSTSUPER, "-c", str(self.etc), "-d", "ALL"], self.log)


def _run(command: list[str], log: Callable[[], str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr}"
                           + (f"\n{log()}" if log else ""))
    return result.stdout


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(64).startswith(b"220")
    except OSError:
        return False


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def wait(condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Whether `condition()` came true within `timeout` seconds (asked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- the pipe's user and the command it runs ----------------------------------------------

@dataclass(frozen=True)
class PipeUser:
    """The unprivileged user the pipe transport runs `gateway ingest` as."""
    name: str
    uid: int
    gid: int

    @classmethod
    def nobody(cls) -> PipeUser:
        return cls("nobody", pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)

    def owns(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)

    def runs(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        """Run `command` as this user, with no supplementary group, as pipe(8) does."""
        return subprocess.run(command, user=self.uid, group=self.gid, extra_groups=[],
                              capture_output=True, text=True, check=False, cwd="/",
                              env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


# What `ingest` imports, compiled once into the launcher's own cache before the first delivery.
WARM = ("import gateway.cli, gateway.schema, gateway.receive.pipe, gateway.pipeline.run, "
        "sqlalchemy.dialects.sqlite, psycopg\n")


def pipe_command(user: PipeUser, folder: Path) -> Path:
    """A `gateway` command that `user` can run, written in `folder`.

    It runs this virtualenv's packages with this interpreter when `user` can run it, else
    with the system's Python of the same version: a virtualenv made from a Python under
    /root (pyenv, say) cannot be run by anyone else, since /root is private. When `user`
    cannot read the project or its packages where they are, they are copied into `folder`.
    Python's compiled files go to a cache in `folder` (`user` cannot write beside the
    sources), warmed here so that each delivery does not compile the gateway again.
    Raises RuntimeError when none of that works.
    """
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    cache = folder / "pycache"
    cache.mkdir(exist_ok=True)
    user.owns(cache)
    python = _python_for(user)
    paths = list(dict.fromkeys([str(PROJECT_DIR), sysconfig.get_paths()["purelib"],
                                sysconfig.get_paths()["platlib"]]))
    if not _runs(user, [str(_script(folder / "warm", python, paths, cache, WARM))]):
        paths = _copy_packages(folder / "copy", paths)
        result = user.runs([str(_script(folder / "warm", python, paths, cache, WARM))])
        if result.returncode != 0:
            raise RuntimeError(f"{user.name} cannot run the gateway:\n{result.stderr}")
    return _script(folder / "gateway", python, paths, cache,
                   "from gateway.cli import main\nsys.exit(main())\n")


def _python_for(user: PipeUser) -> str:
    """This interpreter when `user` can run it, else the system's of the same version."""
    if _runs(user, [sys.executable, "-c", "pass"]):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/bin:/usr/local/bin")
    if system is None or not _runs(user, [system, "-c", "pass"]):
        raise RuntimeError(f"{user.name} cannot run {sys.executable}, nor a system {version}")
    return system


def _runs(user: PipeUser, command: list[str]) -> bool:
    try:
        return user.runs(command).returncode == 0
    except OSError:  # the interpreter itself cannot be reached
        return False


def _script(path: Path, python: str, paths: list[str], cache: Path, body: str) -> Path:
    """A script that runs `body` with `python` in isolated mode (no environment, no
    site-packages of the system), `paths` on sys.path and compiled files in `cache`."""
    setup = (f"import site, sys\nsys.pycache_prefix = {str(cache)!r}\n"
             + "".join(f"site.addsitedir({p!r})\n" for p in paths))
    path.write_text(f"#!{python} -IS\n{setup}{body}")
    path.chmod(0o755)
    return path


def _copy_packages(target: Path, paths: list[str]) -> list[str]:
    """Copies, readable by all, of the project's `gateway` and `templates` and of the
    virtualenv's packages; returns the paths to put on sys.path."""
    project, *packages = paths
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("gateway", "templates"):
        shutil.copytree(Path(project) / name, target / "project" / name, ignore=ignore)
    copies = [str(target / "project")]
    for n, source in enumerate(packages):
        # The editable install would point back at the project where it lies.
        shutil.copytree(source, target / f"packages{n}", ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "__editable__*"))
        copies.append(str(target / f"packages{n}"))
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    target.chmod(0o755)
    return copies
