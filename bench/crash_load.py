"""The crash battery's world outside the gateway: a relay stand-in that counts every copy it
is handed, and clients that write to the gateway's SMTP door as people do.

Customers open cases (client code, serial, criticality in the subject) and reply to the
mail they got through its Reply-To token; agents answer the notices they got through
theirs. A client never retries a message the door did not answer 250: only acknowledged
messages are owed, and they are counted by Message-ID. Used by crash.py; talks to
127.0.0.1 only.
"""
from __future__ import annotations

import email
import email.policy
import random
import smtplib
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from aiosmtpd.controller import Controller

SUPPORT = "assistance@editeur.example"
# (address, client code, serial) of the demo data's contacts (config/sample-data.toml).
CUSTOMERS = [("claire.martin@boulangeries-lefevre.example", "C10042", "SN-7F3A-2291"),
             ("paul.girard@boulangeries-lefevre.example", "C10042", "SN-7F3A-2291"),
             ("helene.dupre@clinique-leman.example", "C20077", "SN-88C1-5530"),
             ("oliver.bennett@northwind.example", "C30105", "SN-42EE-9001")]
AGENTS = ["mathilde.roche@editeur.example", "gregoire.vidal@editeur.example"]


@dataclass(frozen=True)
class Mail:
    """One mail the relay was handed, as its recipient sees it."""
    message_id: str
    subject: str
    reply_to: str


class RelayStandIn:
    """An aiosmtpd server standing in for the outbound relay; counts copies by
    (recipient, Message-ID) and keeps each recipient's mail for the clients to answer."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.copies: Counter[tuple[str, str]] = Counter()
        self.inbox: dict[str, list[Mail]] = defaultdict(list)
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server, session, envelope) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        reply_to = msg["Reply-To"].addresses[0].addr_spec if msg["Reply-To"] else ""
        mail = Mail(str(msg["Message-ID"]).strip(), str(msg["Subject"] or ""), reply_to)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.copies[(rcpt.lower(), mail.message_id)] += 1
                self.inbox[rcpt.lower()].append(mail)
        return "250 OK"

    def total(self) -> int:
        with self.lock:
            return sum(self.copies.values())

    def answerable(self, address: str, rng: random.Random) -> Mail | None:
        """A recent mail `address` got with a personal Reply-To token, if any."""
        with self.lock:
            mails = [m for m in self.inbox.get(address, [])[-20:] if "+" in m.reply_to.partition("@")[0]]
        return rng.choice(mails) if mails else None


@dataclass
class Tally:
    """What the clients sent: acknowledged Message-IDs by kind, and attempts not acknowledged."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    acknowledged: dict[str, str] = field(default_factory=dict)
    unacknowledged: int = 0

    def count(self, message_id: str, kind: str | None) -> None:
        with self.lock:
            if kind is None:
                self.unacknowledged += 1
            else:
                self.acknowledged[message_id] = kind


def compose(relay: RelayStandIn, rng: random.Random, n: int) -> tuple[EmailMessage, str, str]:
    """The next message a person writes: (message, envelope recipient, kind)."""
    roll = rng.random()
    if roll < 0.35:
        agent = rng.choice(AGENTS)
        if (got := relay.answerable(agent, rng)) is not None:
            return _mail(agent, got.reply_to, f"RE: {got.subject}", f"Bonjour,\n\nVoici notre réponse {n}.\n",
                         got.message_id), got.reply_to, "answer"
    address, client, serial = rng.choice(CUSTOMERS)
    if roll < 0.7 and (got := relay.answerable(address, rng)) is not None:
        return _mail(address, got.reply_to, f"RE: {got.subject}", f"Une précision {n} : rien ne change.\n",
                     got.message_id), got.reply_to, "reply"
    subject = f"[CLIENT {client}] [SERIE {serial}] [CRITICITE {rng.randint(1, 4)}] Incident {n}"
    return _mail(address, SUPPORT, subject, f"Bonjour,\n\nL'écran {n} reste figé.\n"), SUPPORT, "open"


def _mail(sender: str, to: str, subject: str, body: str, answering: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.partition("@")[2])
    if answering:
        msg["In-Reply-To"] = msg["References"] = answering
    msg.set_content(body)
    return msg


def client(port: int, relay: RelayStandIn, tally: Tally, stop: threading.Event, seed: int,
           on_ack: Callable[[], None]) -> None:
    """Write to the door on 127.0.0.1:`port` until `stop` is set."""
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        msg, to, kind = compose(relay, rng, n)
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.send_message(msg, from_addr=str(msg["From"]), to_addrs=[to])
        except (OSError, smtplib.SMTPException):  # the gateway is down, or was killed mid-way
            tally.count(str(msg["Message-ID"]), None)
            stop.wait(0.2)
            continue
        tally.count(str(msg["Message-ID"]), kind)
        on_ack()
        stop.wait(rng.uniform(0, 0.02))
