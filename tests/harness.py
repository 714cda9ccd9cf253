"""Test harness: a relay stand-in that collects what the gateway sends, mail builders,
and a running gateway (SMTP door, pipeline worker, outbox sender) on loopback ports."""
from __future__ import annotations

import dataclasses
import email
import email.policy
import smtplib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import strict
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, select, text

from gateway.address import SupportAddress
from gateway.config import Settings
from gateway.db import session_scope
from gateway.models import OutboundMessage
from gateway.outbound.compose import clean_header
from gateway.serve import Gateway

SUPPORT = "assistance@editeur.example"
CLAIRE = "claire.martin@boulangeries-lefevre.example"
PAUL = "paul.girard@boulangeries-lefevre.example"
HELENE = "helene.dupre@clinique-leman.example"
OLIVER = "oliver.bennett@northwind.example"
MATHILDE = "mathilde.roche@editeur.example"
GREGOIRE = "gregoire.vidal@editeur.example"
ADV = "adv@editeur.example"


@dataclass
class Received:
    """One delivery the relay accepted: the envelope recipient, the parsed message and its raw bytes."""
    rcpt: str
    message: EmailMessage
    raw: bytes

    @property
    def subject(self) -> str:
        """The subject as a strict RFC 2047 client shows it (not policy.default's lenient reading)."""
        found = strict.values(self.raw, "Subject")
        return strict.decode(found[0]) if found else ""

    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content() if part is not None else ""

    def html(self) -> str:
        part = self.message.get_body(("html",))
        return part.get_content() if part is not None else ""


class Relay:
    """An aiosmtpd server standing in for the outbound relay; keeps every delivery.

    `log` keeps the raw bytes of every message it accepted, even after `clear()`, so that
    the `relay` fixture can check them all when the test ends."""

    def __init__(self, port: int) -> None:
        self.received: list[Received] = []
        self.log: list[bytes] = []
        self.changed = threading.Condition()
        self.refuse: Callable[[str], str | None] = lambda _rcpt: None
        self.on_received: Callable[[Received], None] | None = None  # e.g. a forwarding mailbox
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        answer = self.refuse(address)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        got = [Received(rcpt.lower(), message, raw) for rcpt in envelope.rcpt_tos]
        with self.changed:
            self.log.append(raw)
            self.received.extend(got)
            self.changed.notify_all()
        if self.on_received is not None:
            for received in got:
                self.on_received(received)
        return "250 OK"

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20) -> list[Received]:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self.received), timeout):
                got = [(r.rcpt, r.subject) for r in self.received]
                raise AssertionError(f"relay did not get what was expected; got {got}")
            return list(self.received)

    def wait_count(self, n: int, timeout: float = 20) -> list[Received]:
        return self.wait_for(lambda got: len(got) >= n, timeout)

    def to(self, rcpt: str) -> list[Received]:
        with self.changed:
            return [r for r in self.received if r.rcpt == rcpt]

    def clear(self) -> None:
        with self.changed:
            self.received.clear()


def sent_problems(engine: Engine, support_name: str, raws: list[bytes]) -> list[str]:
    """What the mails in `raws` get wrong against their outbox rows (found by Message-ID):
    Subject, To, Cc, From and Reply-To must decode strictly to the text meant."""
    ids = [(strict.values(raw, "Message-ID") or [""])[0].strip() for raw in raws]
    support = [(clean_header(support_name), None)]
    found = []
    with session_scope(engine) as session:
        rows = {row.message_id: row for row in session.scalars(
            select(OutboundMessage).where(OutboundMessage.message_id.in_(set(ids))))}
        for raw, message_id in zip(raws, ids):
            row = rows.get(message_id)
            if row is None:
                found.append(f"{message_id or 'a mail without Message-ID'}: no outbox row")
                continue
            names = {"To": _named(row.to_header), "Cc": _named(row.cc_header), "From": support, "Reply-To": support}
            found += [f"{message_id}: {p}" for p in strict.problems(raw, row.subject, names)]
    return found


def _named(pairs: list[list[str]]) -> list[tuple[str, str | None]]:
    return [(clean_header(name or ""), address) for name, address in pairs]


def mail(sender: str, subject: str, body: str = "Bonjour,\n\nVoici le détail.\n", *,
         to: str = SUPPORT, cc: list[str] | None = None, headers: dict[str, str] | None = None,
         attachments: list[tuple[str, bytes, str]] | None = None, name: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if name else sender
    msg["To"] = to
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=sender.partition("@")[2] or "example.org")
    msg["Date"] = email.utils.formatdate(localtime=True)
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    for filename, data, ctype in attachments or []:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def agent_mail(engine: Engine, settings: Settings, agent: str, number: int, subject: str,
               body: str = "Bonjour,\n\nVoici notre réponse.\n", **kwargs) -> EmailMessage:
    """An agent's mail on case `number` with the usual proof: sent to the agent's own signed
    Reply-To for that case, as a reply to one of the case's notices is."""
    from gateway.db import session_scope
    from gateway.outbound import token
    with session_scope(engine) as session:
        key = token.secret(session, settings)
    to = settings.support.mailbox.with_token(token.make(key, number, agent))
    return mail(agent, subject, body, to=to, **kwargs)


def confirmation_reply(engine: Engine, address: str, body: str = "Oui, c'est bien moi.") -> EmailMessage:
    """`address`'s reply to the newest confirmation mail queued for it, through its token."""
    from sqlalchemy import select

    from gateway.db import session_scope
    from gateway.models import Delivery, OutboundMessage
    with session_scope(engine) as session:
        tok, subject = session.execute(
            select(Delivery.token, OutboundMessage.subject).join(OutboundMessage)
            .where(Delivery.recipient == address, OutboundMessage.kind == "confirm_request")
            .order_by(Delivery.id.desc()).limit(1)).one()
    return mail(address, f"RE: {subject}", body, to=SupportAddress.parse(SUPPORT).with_token(tok))


def reply_to(received: Received, sender: str, body: str, subject: str | None = None,
             **kwargs) -> EmailMessage:
    """A reply as a mail client writes it: to the Reply-To, threaded, quoting the original."""
    original = received.message
    quoted = "\n".join("> " + line for line in received.text().splitlines())
    msg = mail(sender, subject or f"RE: {received.subject}",
               f"{body}\n\nLe 28/11/2026 à 10:02, Support a écrit :\n{quoted}\n",
               to=str(original["Reply-To"]), **kwargs)
    msg["In-Reply-To"] = original["Message-ID"]
    msg["References"] = original["Message-ID"]
    return msg


def send(settings: Settings, msg: EmailMessage | bytes, sender: str | None = None,
         rcpt: list[str] | None = None) -> None:
    with smtplib.SMTP(settings.smtp.host, settings.smtp.port, timeout=30) as smtp:
        if isinstance(msg, bytes):
            smtp.sendmail(sender or "", rcpt or [SUPPORT], msg)
        else:
            envelope_to = rcpt or [a.addr_spec for a in email.message_from_bytes(
                msg.as_bytes(), policy=email.policy.default)["To"].addresses]
            smtp.send_message(msg, from_addr=sender, to_addrs=envelope_to)


@contextmanager
def table_away(engine: Engine) -> Iterator[None]:
    """The inbound table is missing for a while, so `intake.store` raises, then comes back."""
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbound_messages RENAME TO inbound_messages_away"))
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE inbound_messages_away RENAME TO inbound_messages"))


def wired(settings: Settings, door_port: int, relay_port: int) -> Settings:
    """`settings` with the SMTP door on `door_port` and outbound mail to the relay."""
    return dataclasses.replace(
        settings,
        smtp=dataclasses.replace(settings.smtp, host="127.0.0.1", port=door_port),
        outbound=dataclasses.replace(settings.outbound, transport="smtp", host="127.0.0.1",
                                     port=relay_port, poll_seconds=0.2))


@contextmanager
def running(settings: Settings, engine: Engine) -> Iterator[Gateway]:
    gateway = Gateway(settings, engine)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


SAMPLE_DATA = """
[[clients]]
code = "C10042"
name = "Boulangeries Lefèvre"

[[clients]]
code = "C20077"
name = "Clinique du Léman"

[[clients]]
code = "C30105"
name = "Northwind Trading Ltd"
language = "en"

[[contracts]]
client = "C10042"
level = "privilege"
points = 1

[[contracts]]
client = "C20077"
level = "standard"

[[licences]]
serial = "SN-7F3A-2291"
client = "C10042"
product = "Gestion Commerciale 100"
modules = ["Ventes", "Achats", "Comptabilité"]

[[licences]]
serial = "SN-1B22-0042"
client = "C10042"
product = "Paie RH"
modules = ["Paie"]
active = false

[[licences]]
serial = "SN-88C1-5530"
client = "C20077"
product = "Comptabilité 100"

[[licences]]
serial = "SN-42EE-9001"
client = "C30105"
product = "Accounting 100"

[[contacts]]
client = "C10042"
name = "Claire Martin"
email = "claire.martin@boulangeries-lefevre.example"

[[contacts]]
client = "C10042"
name = "Paul Girard"
email = "paul.girard@boulangeries-lefevre.example"

[[contacts]]
client = "C20077"
name = "Hélène Dupré"
email = "helene.dupre@clinique-leman.example"

[[contacts]]
client = "C30105"
name = "Oliver Bennett"
email = "oliver.bennett@northwind.example"

[[agents]]
name = "Mathilde Roche"
email = "mathilde.roche@editeur.example"

[[agents]]
name = "Grégoire Vidal"
email = "gregoire.vidal@editeur.example"
"""
