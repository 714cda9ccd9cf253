"""A Message-ID is not a message: some broken mailers reuse one for other messages. Another
message under a known Message-ID (another sender or another body) is stored, processed and
flagged; the same message delivered twice (as by two MX hosts, each adding its Received
field) is still a duplicate, by every door."""
from __future__ import annotations

from email.message import EmailMessage

from harness import CLAIRE, PAUL, mail
from sqlalchemy import select, update
from test_rules import deliver, sent_to

from gateway import intake
from gateway.db import session_scope
from gateway.models import Case, InboundMessage
from gateway.pipeline import run

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"
REUSED = "<20261130.1@broken-mailer.example>"


def with_id(msg: EmailMessage, message_id: str = REUSED) -> EmailMessage:
    msg.replace_header("Message-ID", message_id)
    return msg


def first_id(engine) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(InboundMessage.id).order_by(InboundMessage.id).limit(1))


def test_another_sender_under_a_known_message_id_is_processed_and_flagged(loaded, settings) -> None:
    first = deliver(loaded, settings, with_id(mail(CLAIRE, OPEN)))
    second = deliver(loaded, settings, with_id(mail(PAUL, OPEN.replace("Factures", "Avoirs"), "Autre chose.\n")))
    assert first[0] == second[0] == "created" and first[2] != second[2]
    assert second[1][-1] == f"reuses the Message-ID of message {first_id(loaded)} with other content"
    assert [kind for kind, *_ in sent_to(loaded, PAUL)] == ["case_opened"]  # its sender is answered
    with session_scope(loaded) as session:
        threads = [session.get(Case, first[2]).thread_id, session.get(Case, second[2]).thread_id]
    assert threads[0] == REUSED and threads[1] != REUSED  # replies to the id find the first case


def test_the_same_sender_with_another_body_is_another_message(loaded, settings) -> None:
    deliver(loaded, settings, with_id(mail(CLAIRE, OPEN, "Premier texte.\n")))
    outcome, reasons, _ = deliver(loaded, settings, with_id(mail(CLAIRE, OPEN, "Second texte.\n")))
    assert outcome == "created" and reasons[-1].startswith("reuses the Message-ID of message")


def test_the_same_message_by_two_mx_hosts_is_a_duplicate(loaded, settings) -> None:
    raw = with_id(mail(CLAIRE, OPEN)).as_bytes()
    first = deliver(loaded, settings, b"Received: from mx1.example by gw; Mon, 30 Nov 2026 10:00:00 +0100\n" + raw)
    again = deliver(loaded, settings, b"Received: from mx2.example by gw; Mon, 30 Nov 2026 10:00:02 +0100\n"
                    + b"Authentication-Results: mx2.example; dkim=pass\n" + raw.replace(b"\n", b"\r\n"))
    assert first[0] == "created"
    assert again[:2] == ("ignored", [f"duplicate of message {first_id(loaded)}"])
    assert len(sent_to(loaded, CLAIRE)) == 1


def test_a_replayed_folder_tells_them_apart_the_same_way(loaded, settings) -> None:
    raw = with_id(mail(CLAIRE, OPEN)).as_bytes()
    other = with_id(mail(PAUL, OPEN, "Autre chose.\n")).as_bytes()
    stored = intake.store_many(loaded, [raw, b"Received: from mx2\n" + raw, other], "pipe")
    assert [s.duplicate for s in stored] == [False, True, False]
    outcomes = run.process_many(loaded, settings, [s.id for s in stored if not s.duplicate])
    assert [o.outcome for o in outcomes] == ["created", "created"]
    assert outcomes[1].reasons[-1] == f"reuses the Message-ID of message {stored[0].id} with other content"


def test_a_copy_of_a_message_stored_before_content_keys_is_a_duplicate(loaded, settings) -> None:
    raw = with_id(mail(CLAIRE, OPEN)).as_bytes()
    deliver(loaded, settings, raw)
    with session_scope(loaded) as session:  # the key an older gateway wrote: the bare Message-ID
        session.execute(update(InboundMessage).values(dedupe_key=REUSED))
    ids = [s.id for s in intake.store_many(loaded, [raw], "pipe")]  # as a replayed folder stores it
    assert deliver(loaded, settings, raw)[0] == "ignored"
    first = first_id(loaded)
    with session_scope(loaded) as session:
        assert session.get(InboundMessage, ids[0]).duplicate_of == first
