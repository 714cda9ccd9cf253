"""The gateway behind a real Postfix, set up as the README's "Behind Postfix" says.

One throwaway Postfix (tests/postfix.py) serves the module, set up the usual way: the
support domain in `mydestination`, plus the README's `local_recipient_maps`,
`recipient_delimiter` and transport map. Mail for `assistance@editeur.example` goes by
LMTP to a `gateway serve` run in the test; mail for `assistance@pipe.editeur.example` (a
second local domain, so that one Postfix serves both doors) goes through the README's
pipe entry to `gateway ingest`, run by Postfix as `nobody`, who owns the SQLite database
and its folder. Each test runs through both doors, on SQLite and PostgreSQL; messages
are sent to Postfix's SMTP port, as a customer's MTA sends them.

Without Postfix (or not as root) these tests are skipped, or fail when
GATEWAY_TEST_REQUIRE_ALL=1.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import CLAIRE, mail, wired
from postfix import PipeUser, Postfix, free_port, missing, pipe_command, wait
from sqlalchemy import Engine, func, select
from test_cli import OPEN, write_config

from gateway.config import DatabaseSettings, Settings
from gateway.db import session_scope
from gateway.models import Delivery, InboundMessage, OutboundMessage
from gateway.serve import Gateway

REQUIRE_ALL = os.environ.get("GATEWAY_TEST_REQUIRE_ALL") == "1"
LMTP_DOMAIN = "editeur.example"
PIPE_DOMAIN = "pipe.editeur.example"

# main.cf lines of the README's recipe. The support domain is in mydestination, so every
# recipient must be a known local one: `assistance` is added to the usual table of users.
RECIPE = {
    "recipient_delimiter": "+",
    "local_recipient_maps": "proxy:unix:passwd.byname $alias_maps inline:{assistance=ok}",
    "transport_maps": "hash:$config_directory/transport",
}
# The README's pipe entry, but for the user and the paths.
PIPE_SERVICE = """\
gateway   unix  -       n       n       -       -       pipe
  flags=RXq user={user} null_sender=
  argv={command} --config {config} ingest --sender ${{sender}} --recipient=${{recipient}}
"""
TRANSPORT = f"""\
assistance@{LMTP_DOMAIN}   lmtp:inet:127.0.0.1:{{lmtp_port}}
assistance@{PIPE_DOMAIN}   gateway:
"""


def _row(engine: Engine, message_id: str) -> InboundMessage | None:
    with session_scope(engine) as session:
        return session.scalars(select(InboundMessage).where(
            InboundMessage.message_id == message_id).order_by(InboundMessage.id)).first()


def _outbound_count(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(OutboundMessage)) or 0)


# -- a throwaway Postfix in front ------------------------------------------------------------

@dataclass
class Instance:
    """The module's Postfix, the port its LMTP transport delivers to, and the pipe's user."""
    postfix: Postfix
    lmtp_port: int
    user: PipeUser
    pipe_config: Path  # the gateway.toml the pipe entry names; each test writes its own

    def folder(self) -> Path:
        """A new folder owned by the pipe's user, for one test's database and log."""
        folder = Path(tempfile.mkdtemp(dir=self.postfix.root, prefix="test-"))
        self.user.owns(folder)
        return folder


@pytest.fixture(scope="module")
def instance() -> Iterator[Instance]:
    """The module's Postfix, started once."""
    reason = missing()
    if reason:
        if REQUIRE_ALL:
            pytest.fail(f"{reason} (GATEWAY_TEST_REQUIRE_ALL=1 forbids skipping it)")
        pytest.skip(reason)
    postfix = Postfix(free_port())
    try:
        user = PipeUser.nobody()
        config = postfix.root / "gateway.toml"
        postfix.configure(
            [LMTP_DOMAIN, PIPE_DOMAIN], RECIPE,
            PIPE_SERVICE.format(user=user.name, config=config,
                                command=pipe_command(user, postfix.root / "bin")),
            {"transport": TRANSPORT.format(lmtp_port=(lmtp_port := free_port()))})
        postfix.start()
        yield Instance(postfix, lmtp_port, user, config)
    finally:
        postfix.close()


@pytest.fixture(params=["lmtp", "pipe"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(settings: Settings, kind: str, instance: Instance) -> Settings:
    """The test's settings with the support address of `kind`'s door, and a SQLite database
    in a folder of the pipe's user, who must own the file and the folder (SQLite writes
    -wal and -shm files beside the database)."""
    url = settings.database_url
    if url.startswith("sqlite"):
        database = instance.folder() / "gateway.sqlite3"
        database.touch()  # created empty by its owner: an empty file is an empty database
        instance.user.owns(database)
        url = f"sqlite:///{database}"
    domain = LMTP_DOMAIN if kind == "lmtp" else PIPE_DOMAIN
    return dataclasses.replace(
        settings, database=DatabaseSettings(url=url),
        support=dataclasses.replace(settings.support, address=f"assistance@{domain}"))


@dataclass
class Door:
    """The way into the gateway under test, through the module's Postfix."""
    kind: str
    address: str
    instance: Instance
    engine: Engine
    down: Callable[[], AbstractContextManager[None]]  # the gateway cannot take mail meanwhile
    down_reason: str  # what Postfix says of a message it keeps meanwhile
    log: Path | None = None
    # Where Postfix's log stood when the test began: what came before is other tests'.
    since: int = 0

    def send(self, msg: Any, sender: str, recipients: list[str] | None = None) -> None:
        self.instance.postfix.send(msg, sender, recipients or [self.address])

    def processed(self, message_id: str) -> InboundMessage:
        """The stored message once the pipeline is done with it; fails fast when Postfix
        bounces it."""
        found: list[InboundMessage] = []

        def done() -> bool:
            row = _row(self.engine, message_id)
            if row is not None and row.outcome != "pending":
                found.append(row)
                return True
            assert "status=bounced" not in self.instance.postfix.log()[self.since:], self.logs()
            return False

        assert wait(done), f"{message_id} was not processed\n{self.logs()}"
        return found[0]

    def logs(self) -> str:
        """Postfix's log since the test began, and the pipe's gateway log."""
        pipe = self.log.read_text(errors="replace") if self.log and self.log.exists() else ""
        return f"--- postfix.log\n{self.instance.postfix.log()[self.since:]}\n--- gateway.log\n{pipe}"


@pytest.fixture
def door(kind: str, settings: Settings, loaded: Engine, instance: Instance,
         request: pytest.FixtureRequest) -> Iterator[Door]:
    """The door of `kind`, ready, with Postfix's queue empty before and after the test."""
    instance.postfix.purge()
    since = len(instance.postfix.log())
    if kind == "lmtp":
        with _lmtp_door(settings, loaded, instance, request.getfixturevalue("relay")) as door:
            door.since = since
            yield door
    else:
        door = _pipe_door(settings, loaded, instance)
        door.since = since
        yield door
    instance.postfix.purge()


@contextmanager
def _lmtp_door(settings: Settings, engine: Engine, instance: Instance, relay: Any) -> Iterator[Door]:
    """`gateway serve` with its LMTP door on the port Postfix's transport names."""
    served = wired(settings, instance.lmtp_port, relay.controller.port)
    served = dataclasses.replace(served, smtp=dataclasses.replace(served.smtp, lmtp=True))
    current = [Gateway(served, engine)]

    @contextmanager
    def down() -> Iterator[None]:
        current[0].stop()
        try:
            yield
        finally:
            current[0] = Gateway(served, engine)
            current[0].start()

    current[0].start()
    try:
        yield Door("lmtp", settings.support.address, instance, engine, down, "Connection refused")
    finally:
        current[0].stop()


def _pipe_door(settings: Settings, engine: Engine, instance: Instance) -> Door:
    """`gateway ingest`, run by Postfix as the pipe's user, on this test's database."""
    folder = instance.folder()
    log = folder / "gateway.log"
    write_config(instance.pipe_config, settings.database_url,
                 support={"address": settings.support.address}, log={"file": str(log)})
    sqlite = settings.database_url.removeprefix("sqlite:///")

    @contextmanager
    def down() -> Iterator[None]:
        if settings.database_url.startswith("sqlite"):
            yield from _readonly_shm(engine, Path(sqlite), instance.user)
        else:
            yield from _unreadable(instance.pipe_config)

    return Door("pipe", settings.support.address, instance, engine, down,
                "could not store the message", log)


def _readonly_shm(engine: Engine, database: Path, user: PipeUser) -> Iterator[None]:
    """A -shm file left by someone else (here root) while no connection is open: SQLite
    can then only read the database. Afterwards, the README's remedy: chown it."""
    engine.dispose()
    shm = database.with_name(database.name + "-shm")
    assert not shm.exists()
    shm.touch(0o644)
    try:
        yield
    finally:
        user.owns(shm)


def _unreadable(config: Path) -> Iterator[None]:
    """The configuration that the pipe's user cannot read, then can again."""
    config.chmod(0o600)
    try:
        yield
    finally:
        config.chmod(0o644)


def _token_for(engine: Engine, recipient: str) -> str:
    """The token of the first mail queued for `recipient`."""
    with session_scope(engine) as session:
        token = session.scalars(select(Delivery.token).where(Delivery.recipient == recipient)
                                .order_by(Delivery.id)).first()
    assert token, f"no mail with a token for {recipient}"
    return token


@pytest.mark.postfix
def test_mail_opens_a_case_and_a_reply_through_the_token_address_finds_it(door: Door) -> None:
    opening = mail(CLAIRE, OPEN, to=door.address)
    door.send(opening, CLAIRE)
    row = door.processed(opening["Message-ID"])
    assert (row.outcome, row.case_id) == ("created", 1), row.reasons
    assert (row.door, row.envelope_from, row.envelope_to) == (door.kind, CLAIRE, [door.address])

    token_address = door.address.replace("@", f"+{_token_for(door.engine, CLAIRE)}@")
    # A reply to all, its subject mangled: only the token names the case.
    reply = mail(CLAIRE, "TR: factures", "Voici la capture demandée.\n", to=token_address,
                 cc=[door.address])
    door.send(reply, CLAIRE, [token_address, door.address])
    row = door.processed(reply["Message-ID"])
    assert (row.outcome, row.case_id) == ("appended", 1), row.reasons
    assert sorted(row.envelope_to) == sorted([token_address, door.address])


@pytest.mark.postfix
def test_postfix_keeps_the_mail_while_the_gateway_cannot_take_it(door: Door) -> None:
    postfix = door.instance.postfix
    msg = mail(CLAIRE, OPEN, to=door.address)
    with door.down():
        door.send(msg, CLAIRE)
        assert wait(lambda: bool(_deferred(postfix))), door.logs()
        [queued] = _deferred(postfix)
        [recipient] = queued["recipients"]
        assert recipient["address"] == door.address
        assert door.down_reason in recipient["delay_reason"], recipient
        assert _row(door.engine, msg["Message-ID"]) is None
    postfix.flush()
    row = door.processed(msg["Message-ID"])
    assert (row.outcome, row.case_id) == ("created", 1), row.reasons
    assert wait(lambda: not postfix.queue()), postfix.queue()


def _deferred(postfix: Postfix) -> list[dict[str, Any]]:
    return [q for q in postfix.queue() if q["queue_name"] == "deferred"]


@pytest.mark.postfix
def test_a_null_sender_auto_reply_is_recognised_and_not_answered(door: Door) -> None:
    """An out-of-office reply with nothing automatic in its header but the null sender."""
    msg = mail(CLAIRE, "Absence du bureau", "Je suis absente jusqu'au 3 décembre.\n",
               to=door.address)
    door.send(msg, "")
    row = door.processed(msg["Message-ID"])
    assert row.envelope_from == ""
    assert row.outcome == "ignored" and "empty return path" in " ".join(row.reasons), row.reasons
    assert _outbound_count(door.engine) == 0
