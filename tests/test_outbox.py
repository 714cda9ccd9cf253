"""The outbox drained to a real SMTP relay (harness.Relay) or a Maildir, with explicit clocks:
one copy per recipient with its own Reply-To token, threading headers, no header injection,
retries with growing delays, 4xx vs 5xx, giving up, the operator's retry, and two senders
at once delivering each message exactly once."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email
import email.policy
import json
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from harness import CLAIRE, GREGOIRE, HELENE, MATHILDE, PAUL, SAMPLE_DATA, SUPPORT, Received, agent_mail, mail, reply_to
from sqlalchemy import Engine, select

from gateway import intake, refdata
from gateway.address import SupportAddress
from gateway.cli import main
from gateway.config import Settings
from gateway.db import session_scope, utcnow
from gateway.models import Case, Delivery, InboundMessage, OutboundMessage
from gateway.outbound import send, token
from gateway.pipeline import run

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"
EVIL = "evil@example.org"
MINUTE = dt.timedelta(minutes=1)


# -- helpers -------------------------------------------------------------------------------------

def via(settings: Settings, port: int, **outbound: Any) -> Settings:
    """`settings` sending through an SMTP relay on 127.0.0.1:`port`."""
    return dataclasses.replace(settings, outbound=dataclasses.replace(
        settings.outbound, transport="smtp", host="127.0.0.1", port=port, **outbound))


def deliver(engine: Engine, settings: Settings, msg: EmailMessage | bytes, now: dt.datetime) -> InboundMessage:
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    stored = intake.store(engine, raw, "pipe")
    run.process(engine, settings, stored.id, now=now)
    with session_scope(engine) as session:
        return session.get(InboundMessage, stored.id)


def open_case(engine: Engine, settings: Settings, now: dt.datetime, subject: str = OPEN,
              **kw: Any) -> tuple[int, str]:
    """(case number, Message-ID of the opening message)."""
    msg = mail(CLAIRE, subject, **kw)
    row = deliver(engine, settings, msg, now)
    assert row.outcome == "created", row.reasons
    return row.case_id, str(msg["Message-ID"])


@dataclass(frozen=True)
class Row:
    id: int
    recipient: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    token: str


def deliveries(engine: Engine) -> list[Row]:
    with session_scope(engine) as session:
        return [Row(d.id, d.recipient, d.status, d.attempts, d.next_attempt_at, d.last_error, d.token)
                for d in session.scalars(select(Delivery).order_by(Delivery.id))]


def one(engine: Engine, recipient: str) -> Row:
    [row] = [r for r in deliveries(engine) if r.recipient == recipient]
    return row


def secret(engine: Engine, settings: Settings) -> bytes:
    with session_scope(engine) as session:
        return token.secret(session, settings)


def header(msg: EmailMessage, name: str) -> str | None:
    """A header's value; a long one is folded before its first word, hence the strip."""
    value = msg[name]
    return None if value is None else str(value).strip()


def addresses(received: Received, header: str) -> list[str]:
    value = received.message[header]
    return [a.addr_spec.lower() for a in value.addresses] if value is not None else []


def gateway(tmp_path: Path, settings: Settings, *args: str) -> Result:
    config = tmp_path / "gateway.toml"
    config.write_text(f"[database]\nurl = {json.dumps(settings.database_url)}\n\n"
                      f"[support]\naddress = {json.dumps(SUPPORT)}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def failed_ids(tmp_path: Path, settings: Settings) -> list[int]:
    """The deliveries `gateway outbox list --failed --json` shows the operator."""
    return [r["id"] for r in json.loads(gateway(tmp_path, settings, "outbox", "list", "--failed", "--json").stdout)]


@pytest.fixture
def t0() -> dt.datetime:
    # The operator's `outbox retry` stamps the real clock, so the test clock starts there.
    return utcnow().replace(microsecond=0)


@pytest.fixture
def smtp(settings: Settings, relay: Any) -> Settings:
    return via(settings, relay.controller.port)


# -- what goes out -----------------------------------------------------------------------------

def test_one_copy_per_recipient_each_with_its_own_reply_token(loaded, smtp, relay, t0) -> None:
    number, opening_id = open_case(loaded, smtp, t0, cc=[PAUL])
    assert send.drain(loaded, smtp, now=t0) == {"sent": 4}
    got = relay.wait_count(4)
    assert sorted(r.rcpt for r in got) == sorted([CLAIRE, PAUL, MATHILDE, GREGOIRE])
    key = secret(loaded, smtp)
    reply_tos = set()
    for r in got:
        [reply] = addresses(r, "Reply-To")
        assert reply == SupportAddress.parse(SUPPORT).with_token(token.make(key, number, r.rcpt))
        assert token.verify(key, SupportAddress.parse(SUPPORT).token_of(reply), r.rcpt) == number
        reply_tos.add(reply)
        assert addresses(r, "From") == [SUPPORT] and r.message["Bcc"] is None
        assert r.message["Message-ID"] and r.message["Date"]
        assert r.message.get_content_type() == "multipart/alternative"
        assert r.text().strip() and "</" in r.html()
    assert len(reply_tos) == 4

    with session_scope(loaded) as session:
        ack = session.scalar(select(OutboundMessage).where(OutboundMessage.kind == "case_opened"))
        thread = session.get(Case, number).thread_id
    for r in (r for r in got if r.rcpt in (CLAIRE, PAUL)):
        assert r.subject == f"[Dossier #{number}] Factures impossibles"
        assert str(r.message["To"]) == f"Claire Martin <{CLAIRE}>"
        assert str(r.message["Cc"]) == f"Paul Girard <{PAUL}>"
        assert r.message["Message-ID"] == ack.message_id
        assert r.message["Auto-Submitted"] == "auto-replied"
        assert header(r.message, "In-Reply-To") == opening_id
        assert header(r.message, "References").split() == [thread] == [opening_id]
        assert "Factures impossibles" in r.text()
    for r in (r for r in got if r.rcpt in (MATHILDE, GREGOIRE)):
        assert addresses(r, "To") == [MATHILDE, GREGOIRE] and r.message["Cc"] is None
        assert r.message["Message-ID"] != ack.message_id

    # Delivered once: a second pass has nothing to send.
    assert send.drain(loaded, smtp, now=t0 + dt.timedelta(days=1)) == {}
    assert len(relay.received) == 4
    assert {r.status for r in deliveries(loaded)} == {"sent"}


def test_every_message_of_a_case_threads_under_its_first(loaded, smtp, relay, t0) -> None:
    number, opening_id = open_case(loaded, smtp, t0, cc=[PAUL])
    send.drain(loaded, smtp, now=t0)
    [ack] = relay.to(CLAIRE)
    relay.clear()
    answer = reply_to(ack, CLAIRE, "Le problème persiste.", cc=[PAUL])
    assert deliver(loaded, smtp, answer, t0 + MINUTE).outcome == "appended"
    deliver(loaded, smtp, agent_mail(loaded, smtp, MATHILDE, number, f"[Dossier #{number}] [RESOLU] corrigé", body="C'est corrigé."),
            t0 + 2 * MINUTE)
    send.drain(loaded, smtp, now=t0 + 2 * MINUTE)
    got = relay.received
    assert relay.to(CLAIRE) and relay.to(PAUL) and relay.to(MATHILDE)
    # Claire wrote the customer message: its notice goes to everyone on the case but her.
    notices = [r for r in got if header(r.message, "In-Reply-To") == answer["Message-ID"]]
    assert sorted(r.rcpt for r in notices) == sorted([PAUL, MATHILDE, GREGOIRE])
    agent_answer = [r for r in got if header(r.message, "In-Reply-To") != answer["Message-ID"]]
    assert sorted(r.rcpt for r in agent_answer) == sorted([CLAIRE, PAUL])
    assert agent_answer[0].message["Auto-Submitted"] is None  # a person's answer
    ids = {r.message["Message-ID"] for r in got}
    # Customers' notice, agents' notice (composed separately), the agent's answer.
    assert len(ids) == 3 and ack.message["Message-ID"] not in ids
    for r in got:
        references = header(r.message, "References").split()
        assert references[0] == opening_id  # the root every mail client threads under
        assert header(r.message, "In-Reply-To") in references
        assert r.subject.startswith(f"[Dossier #{number}] ")


def test_accented_subjects_and_names_read_exactly_in_a_strict_client(loaded, smtp, relay, t0) -> None:
    # Python's own folding put the space between "être" and "traitée" between two encoded
    # words, which mutt and Thunderbird drop; the relay fixture checks every header too.
    inactive = "[CLIENT C10042] [SERIE SN-1B22-0042] [CRITICITE 2] Bulletins de paie"
    assert deliver(loaded, smtp, mail(CLAIRE, inactive), t0).outcome == "refused"
    title = "Écran figé après la mise à jour : impossible d'éditer les « bons de livraison » de décembre"
    opened = deliver(loaded, smtp, mail(HELENE, f"[CLIENT C20077] [SERIE SN-88C1-5530] [CRITICITE 3] {title}"), t0)
    assert opened.outcome == "created", opened.reasons
    send.drain(loaded, smtp, now=t0)
    [notice] = relay.to(CLAIRE)
    assert notice.subject == "Licence SN-1B22-0042 inactive : votre demande n'a pas pu être traitée"
    [ack] = relay.to(HELENE)
    assert ack.subject == f"[Dossier #{opened.case_id}] {title}"
    assert [a.display_name for a in ack.message["To"].addresses] == ["Hélène Dupré"]


def _encoded(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def _assert_no_injection(received: list[Received], expected: set[str]) -> None:
    assert {r.rcpt for r in received} == expected
    for r in received:
        assert r.message["Bcc"] is None
        assert EVIL not in addresses(r, "To") + addresses(r, "Cc") + addresses(r, "Reply-To")
        assert "\n" not in r.subject and "\r" not in r.subject


def test_no_header_injection_through_a_case_title(loaded, smtp, relay, t0) -> None:
    raw = (f"From: Claire Martin <{CLAIRE}>\r\nTo: {SUPPORT}\r\nMessage-ID: <inject-1@example.org>\r\n"
           f"Subject: [CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE 2] "
           f"{_encoded('Factures' + chr(13) + chr(10) + 'Bcc: ' + EVIL)}\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nPlus rien ne marche.\r\n").encode()
    row = deliver(loaded, smtp, raw, t0)
    assert row.outcome == "created", row.reasons
    send.drain(loaded, smtp, now=t0)
    _assert_no_injection(relay.wait_count(3), {CLAIRE, MATHILDE, GREGOIRE})


def test_no_header_injection_through_a_display_name(loaded, smtp, relay, t0) -> None:
    # The sender's display name is used to answer them (here: a refusal).
    raw = (f"From: {_encoded('Claire' + chr(13) + chr(10) + 'Bcc: ' + EVIL)} <{CLAIRE}>\r\n"
           f"To: {SUPPORT}\r\nMessage-ID: <inject-2@example.org>\r\nSubject: Sans les champs\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nBonjour.\r\n").encode()
    assert deliver(loaded, smtp, raw, t0).outcome == "refused"
    # A contact's name in the reference data is written by a person too.
    with session_scope(loaded) as session:
        refdata.import_data(session, refdata.load_file(SAMPLE_DATA.replace(
            'name = "Paul Girard"', f'name = "Paul Girard\\r\\nBcc: {EVIL}"')))
    open_case(loaded, smtp, t0, cc=[PAUL])
    counts = send.drain(loaded, smtp, now=t0)
    assert counts == {"sent": 5}, counts
    received = relay.wait_count(5)
    _assert_no_injection(received, {CLAIRE, PAUL, MATHILDE, GREGOIRE})
    ack = next(r for r in received if r.rcpt == PAUL)
    assert addresses(ack, "Cc") == [PAUL] and addresses(ack, "To") == [CLAIRE]


# -- retries -----------------------------------------------------------------------------------

def test_relay_down_delays_with_growing_steps_and_loses_nothing(loaded, settings, relay, free_port,
                                                                t0) -> None:
    down = via(settings, free_port())  # nothing listens there
    open_case(loaded, down, t0, cc=[PAUL])
    assert send.drain(loaded, down, now=t0) == {"pending": 4}
    for row in deliveries(loaded):
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, t0 + MINUTE)
        assert row.last_error
    assert send.drain(loaded, down, now=t0 + 30 * dt.timedelta(seconds=1)) == {}  # not due yet
    when, steps = t0 + MINUTE, []
    for attempts in (2, 3, 4):
        assert send.drain(loaded, down, now=when) == {"pending": 4}
        [next_at] = {row.next_attempt_at for row in deliveries(loaded)}
        assert {row.attempts for row in deliveries(loaded)} == {attempts}
        steps.append(next_at - when)
        when = next_at
    assert steps == [5 * MINUTE, 15 * MINUTE, 30 * MINUTE]
    assert relay.received == []

    back = via(settings, relay.controller.port)
    assert send.drain(loaded, back, now=when - MINUTE) == {}  # the relay is back, but not yet due
    assert send.drain(loaded, back, now=when) == {"sent": 4}
    assert sorted(r.rcpt for r in relay.wait_count(4)) == sorted([CLAIRE, PAUL, MATHILDE, GREGOIRE])
    assert {(row.status, row.attempts) for row in deliveries(loaded)} == {("sent", 5)}


def test_a_temporary_refusal_is_retried(loaded, smtp, relay, t0) -> None:
    relay.refuse = lambda rcpt: "451 4.3.0 try later" if rcpt.lower() == CLAIRE else None
    open_case(loaded, smtp, t0)
    assert send.drain(loaded, smtp, now=t0) == {"sent": 2, "pending": 1}
    row = one(loaded, CLAIRE)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, t0 + MINUTE)
    assert "451" in row.last_error
    relay.refuse = lambda rcpt: None
    assert send.drain(loaded, smtp, now=t0 + MINUTE) == {"sent": 1}
    assert len(relay.to(CLAIRE)) == 1 and one(loaded, CLAIRE).status == "sent"


def test_a_permanent_refusal_is_set_aside_and_the_operator_retries_it(loaded, smtp, relay, t0,
                                                                      tmp_path) -> None:
    relay.refuse = lambda rcpt: "550 5.1.1 no such user" if rcpt.lower() == PAUL else None
    open_case(loaded, smtp, t0, cc=[PAUL])
    assert send.drain(loaded, smtp, now=t0) == {"sent": 3, "failed": 1}
    paul = one(loaded, PAUL)
    assert (paul.status, paul.attempts) == ("failed", 1) and "550" in paul.last_error
    assert failed_ids(tmp_path, smtp) == [paul.id]
    assert send.drain(loaded, smtp, now=t0 + dt.timedelta(days=1)) == {}  # set aside: never retried alone

    relay.refuse = lambda rcpt: None
    assert "queued again" in gateway(tmp_path, smtp, "outbox", "retry", str(paul.id)).stdout
    assert failed_ids(tmp_path, smtp) == []
    assert send.drain(loaded, smtp, now=utcnow() + dt.timedelta(seconds=1)) == {"sent": 1}
    assert len(relay.to(PAUL)) == 1 and one(loaded, PAUL).status == "sent"


def test_a_delivery_failing_past_the_give_up_delay_is_set_aside(loaded, settings, free_port, t0,
                                                                tmp_path) -> None:
    down = via(settings, free_port(), give_up_after_hours=2)
    open_case(loaded, down, t0)
    assert send.drain(loaded, down, now=t0) == {"pending": 3}
    assert send.drain(loaded, down, now=t0 + dt.timedelta(hours=1)) == {"pending": 3}  # not yet
    assert send.drain(loaded, down, now=t0 + dt.timedelta(hours=2, minutes=1)) == {"failed": 3}
    rows = deliveries(loaded)
    assert {(r.status, r.attempts) for r in rows} == {("failed", 3)} and all(r.last_error for r in rows)
    assert sorted(failed_ids(tmp_path, down)) == [r.id for r in rows]
    assert send.drain(loaded, down, now=t0 + dt.timedelta(days=30)) == {}


# -- maildir ---------------------------------------------------------------------------------------

def test_maildir_transport_writes_one_file_per_delivery(loaded, settings, tmp_path, t0) -> None:
    folder = tmp_path / "outgoing" / "sent"  # its parent does not exist yet either
    to_maildir = dataclasses.replace(settings, outbound=dataclasses.replace(
        settings.outbound, transport="maildir", maildir=str(folder)))
    number, opening_id = open_case(loaded, to_maildir, t0, cc=[PAUL])
    assert send.drain(loaded, to_maildir, now=t0) == {"sent": 4}
    files = sorted((folder / "new").iterdir())
    assert len(files) == 4
    key = secret(loaded, to_maildir)
    with session_scope(loaded) as session:
        by_reply_to = {SupportAddress.parse(SUPPORT).with_token(d.token): d for d in session.scalars(select(Delivery))}
        seen = set()
        for file in files:
            msg = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
            [reply] = [a.addr_spec for a in msg["Reply-To"].addresses]
            delivery = by_reply_to[reply]
            seen.add(delivery.id)
            assert token.verify(key, SupportAddress.parse(SUPPORT).token_of(reply), delivery.recipient) == number
            composed = delivery.message
            assert msg["Subject"] == composed.subject
            assert composed.subject.startswith(f"[Dossier #{number}] ")
            assert msg["Message-ID"] == composed.message_id
            assert header(msg, "In-Reply-To") == composed.in_reply_to == opening_id
            assert header(msg, "References") == composed.references
            assert msg["Auto-Submitted"] == composed.auto_submitted
            assert [[a.display_name, a.addr_spec] for a in msg["To"].addresses] == composed.to_header
            assert [[a.display_name, a.addr_spec] for a in (msg["Cc"].addresses if msg["Cc"] else ())] \
                == composed.cc_header
            assert msg.get_body(("plain",)).get_content().strip() == composed.text.strip()
            assert msg.get_body(("html",)).get_content().strip() == composed.html.strip()
    assert len(seen) == 4


# -- two senders at once ---------------------------------------------------------------------------

def test_two_concurrent_drains_deliver_each_delivery_exactly_once(loaded, smtp, relay, t0) -> None:
    # More deliveries than one claim takes (50), so that both senders find work; sixteen
    # openings by one author in a row would otherwise be capped as a flood.
    smtp = dataclasses.replace(smtp, support=dataclasses.replace(smtp.support, notices_per_window=100))
    for i in range(16):
        open_case(loaded, smtp, t0, subject=f"{OPEN} {i}", cc=[PAUL])
    total = len(deliveries(loaded))
    assert total == 16 * 4
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            start.wait(timeout=10)
            results.append(send.drain(loaded, smtp, now=t0))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(r.get("sent", 0) for r in results) == total
    received = relay.wait_count(total)
    assert len(received) == total
    copies = {(r.rcpt, r.message["Message-ID"]) for r in received}
    assert len(copies) == total
    assert {(row.status, row.attempts) for row in deliveries(loaded)} == {("sent", 1)}

