"""No mail the gateway writes outgrows what a relay accepts (Postfix: 10,240,000 bytes by
default). A text a person wrote is shown up to 150,000 characters, with a note (French or
English) saying the case keeps it whole; files travel as far as the room left allows; the
case keeps everything."""
from __future__ import annotations

import dataclasses

import pytest
from harness import CLAIRE, MATHILDE, OLIVER, mail
from sqlalchemy import select
from test_rules import deliver, open_case

from gateway.db import session_scope
from gateway.models import Attachment, CaseEvent, Delivery, OutboundMessage
from gateway.outbound import send

RELAY_LIMIT = 10_240_000
OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"
OPEN_OLIVER = "[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY high] Ledger export fails"
# The costliest characters once encoded: 4-byte UTF-8 (quoted-printable: 12 bytes each),
# and "&", "<", '"' that HTML escapes, on long lines.
WORST_LINE = ("🙂&<\"é" * 200 + "\n")


def built(engine, settings, kind: str | None = None) -> list[tuple[str, str, bytes]]:
    """(kind, recipient, bytes) of every mail in the outbox, built as the sender builds it."""
    with session_scope(engine) as session:
        out = []
        for delivery in session.scalars(select(Delivery).order_by(Delivery.id)):
            if kind is None or delivery.message.kind == kind:
                files = send.carried_files(session, delivery.message_id)
                out.append((delivery.message.kind, delivery.recipient,
                            send.build(delivery, settings, files).as_bytes()))
        return out


def largest_files() -> list[tuple[str, bytes, str]]:
    """7 MB of files (the default `max_attachment_bytes`) in halving sizes, so that whatever
    room the text leaves gets filled, and 60 small ones with the longest names parse keeps,
    in characters that encode worst."""
    sizes = [3_500_000 >> i for i in range(12)]
    big = [(f"journal-{i}.bin", b"\xff" * n, "application/octet-stream") for i, n in enumerate(sizes)]
    rest = 7_000_000 - sum(sizes)
    small = [(("é🙂" * 75)[:148] + f"{i:02}", b"x" * (rest // 60), "application/octet-stream") for i in range(60)]
    return big + small


@pytest.mark.parametrize("sender, subject", [(CLAIRE, OPEN), (OLIVER, OPEN_OLIVER)])
def test_the_largest_acknowledgement_and_notice_stay_under_the_relay_limit(loaded, settings, sender, subject) -> None:
    text = WORST_LINE * 1_200  # 1,200,000 characters
    msg = mail(sender, subject, text, cc=[f"{'c' * 60}{i}@elsewhere.example" for i in range(100)],
               attachments=largest_files())
    outcome, reasons, number = deliver(loaded, settings, msg)
    assert outcome == "created", reasons
    mails = built(loaded, settings)
    assert {kind for kind, *_ in mails} == {"case_opened", "agent_new_case"}
    sizes = {kind: len(raw) for kind, _, raw in mails}
    assert max(sizes.values()) < RELAY_LIMIT, sizes
    assert min(sizes.values()) > RELAY_LIMIT - 1_500_000  # the room left is used
    with session_scope(loaded) as session:
        kept = session.scalar(select(CaseEvent.text).where(CaseEvent.case_id == number))
        files = session.scalars(select(Attachment.size).where(Attachment.case_id == number)).all()
    assert kept == text.strip() and sum(files) == sum(len(data) for _, data, _ in largest_files())


def test_a_long_text_is_shortened_in_mails_with_a_note_in_each_language(loaded, settings) -> None:
    text = "Voici le journal complet.\n" + "ligne du journal\n" * 20_000 + "FIN-DU-JOURNAL"
    for sender, subject in ((CLAIRE, OPEN), (OLIVER, OPEN_OLIVER)):
        assert deliver(loaded, settings, mail(sender, subject, text))[0] == "created"
    with session_scope(loaded) as session:
        rows = {(m.kind, d.recipient): m for d in session.scalars(select(Delivery)) for m in [d.message]}
    french, english, agents = rows["case_opened", CLAIRE], rows["case_opened", OLIVER], rows["agent_new_case", MATHILDE]
    for row in (french, english, agents):
        assert "Voici le journal complet." in row.text and "FIN-DU-JOURNAL" not in row.text
        assert "Voici le journal complet." in row.html and "FIN-DU-JOURNAL" not in row.html
    total = f"{len(text.strip()):,}"
    assert "Texte raccourci pour ce message" in french.text and total.replace(",", "\u202f") in french.text
    assert "Texte raccourci pour ce message" in french.html and "Le dossier conserve le texte entier." in french.html
    assert "Text shortened for this mail" in english.text and total in english.text
    assert "The case keeps the whole text." in english.html


def test_a_text_within_the_limit_is_shown_whole_without_a_note(loaded, settings) -> None:
    number = open_case(loaded, settings)
    text = "x" * (150_000 - 10)
    deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] Suite", text))
    with session_scope(loaded) as session:
        row = session.scalars(select(OutboundMessage).where(OutboundMessage.kind == "case_message")).first()
    assert text in row.text and "raccourci" not in row.text


def test_files_that_no_longer_fit_beside_a_long_text_are_named(loaded, settings) -> None:
    tight = dataclasses.replace(settings, outbound=dataclasses.replace(settings.outbound, max_message_bytes=3_000_000))
    files = [("a.bin", b"a" * 1_000_000, "application/octet-stream"), ("b.bin", b"b" * 1_000_000, "application/octet-stream")]
    outcome, _, _ = deliver(loaded, tight, mail(CLAIRE, OPEN, WORST_LINE * 1_000, attachments=files))
    assert outcome == "created"
    for kind, _, raw in built(loaded, tight, "case_opened"):
        assert len(raw) < 3_000_000
        assert b"b.bin" in raw  # named in the text, as a file too big is
