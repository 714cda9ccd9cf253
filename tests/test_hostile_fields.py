"""Both databases alike: whatever a message holds (an overlong Message-ID or sender, NUL and
control characters, an absurd case number), SQLite and PostgreSQL store the same bounded
values and the message is stored and ends with an outcome, never held or refused at the
door. And nothing a person wrote is refused as empty, however long or however linked."""
from __future__ import annotations

import pytest
from harness import CLAIRE, MATHILDE, SUPPORT, mail, send
from sqlalchemy import String, select
from test_cli import Cli, write_config
from test_rules import deliver, open_case, sent_to

from gateway import intake, models
from gateway.db import session_scope
from gateway.models import Attachment, Case, CaseEvent, InboundMessage

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"
URL = "https://example.com/" + "a" * 100_000


def raw_mail(subject: str, body: str = "Bonjour\r\n", *, sender: str = CLAIRE, message_id: str = "<m@x.example>",
             headers: str = "", ctype: str = "text/plain; charset=utf-8") -> bytes:
    return (f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n{headers}\r\n{body}").encode("utf-8", "surrogateescape")


def inbound(engine, inbound_id: int) -> InboundMessage:
    with session_scope(engine) as session:
        return session.get(InboundMessage, inbound_id)


def test_a_message_id_over_255_characters_opens_its_case_and_threads_its_replies(loaded, settings) -> None:
    long_id = f"<{'x' * 300}@customer.example>"
    outcome, reasons, number = deliver(loaded, settings, raw_mail(OPEN, message_id=long_id))
    assert outcome == "created", reasons
    with session_scope(loaded) as session:
        thread = session.get(Case, number).thread_id
        stored = session.scalar(select(InboundMessage.message_id).where(InboundMessage.case_id == number))
    assert len(thread) <= 255 and stored == thread
    # Her colleague answers her own message, not the gateway's: the id still finds the case.
    reply = raw_mail("RE: Factures impossibles", "Une précision.\r\n", message_id="<r@x.example>",
                     headers=f"In-Reply-To: {long_id}\r\n")
    assert deliver(loaded, settings, reply)[::2] == ("appended", number)


def test_a_sender_over_320_characters_is_refused_not_held(loaded, settings) -> None:
    outcome, reasons, _ = deliver(loaded, settings, raw_mail(OPEN, sender="x" * 400 + "@customer.example"))
    assert (outcome, reasons) == ("refused", ["no valid sender address: nobody to answer"])


def test_an_envelope_sender_over_320_characters_is_stored(loaded, settings) -> None:
    stored = intake.store(loaded, raw_mail(OPEN), "smtp", "y" * 400 + "@customer.example", [SUPPORT + "\x00"])
    row = inbound(loaded, stored.id)
    assert len(row.envelope_from) == 320 and row.envelope_to == [SUPPORT]


def test_a_nul_in_the_message_id_is_stored_and_answered_250(gateway, relay, loaded) -> None:
    send(gateway.settings, raw_mail(OPEN, message_id="<a\x00b@customer.example>"), CLAIRE)
    relay.wait_for(lambda got: any(r.rcpt == CLAIRE for r in got))
    with session_scope(loaded) as session:
        row = session.scalars(select(InboundMessage)).one()
    assert (row.outcome, row.message_id) == ("created", None)


def test_a_nul_in_the_message_id_is_stored_by_the_pipe_door(loaded, settings, tmp_path) -> None:
    cli = Cli(write_config(tmp_path / "gateway.toml", settings.database.url))
    result = cli("ingest", input=raw_mail(OPEN, message_id="<a\x00b@customer.example>"))
    assert result.exit_code == 0, result.output


def test_control_characters_never_reach_the_database(loaded, settings) -> None:
    body = ("--b\r\nContent-Type: text/plain; charset=\"utf\x00-8\"\r\n\r\nBon\x00jour\x07 !\r\n"
            "--b\r\nContent-Type: image/png\x00\x1b; name=\"a\x00\x1b\u202eb.png\"\r\n"
            "Content-Disposition: attachment; filename=\"c\x00\x1bd.png\"\r\n\r\ndata\r\n--b--\r\n")
    raw = raw_mail(OPEN + " \x00\x1b[31m rouge", body, ctype="multipart/mixed; boundary=b",
                   sender=f'"Claire\x00\x1b" <{CLAIRE}>')
    outcome, reasons, number = deliver(loaded, settings, raw)
    assert outcome == "created", reasons
    with session_scope(loaded) as session:
        values = [session.get(Case, number).title, session.scalars(select(InboundMessage.subject)).one()]
        values += [e.text for e in session.scalars(select(CaseEvent).where(CaseEvent.case_id == number))]
        values += [v for a in session.scalars(select(Attachment)) for v in (a.filename, a.content_type)]
    assert values and not any(ch in v for v in values for ch in "\x00\x07\x1b")
    assert "Bonjour !" in values


@pytest.mark.parametrize("subject", ["[Dossier #99999999999] Où en est-on ?", "[SUIVI #99999999999]"])
def test_a_case_number_no_case_can_have_is_not_found_on_both_databases(loaded, settings, subject) -> None:
    outcome, reasons, _ = deliver(loaded, settings, raw_mail(subject))
    assert (outcome, reasons) == ("refused", ["case_not_found: number=99999999999"])


def test_every_column_filled_from_mail_holds_its_bound() -> None:
    """The bounds of gateway/bounds.py fit the columns they fill (SQLite would not say)."""
    from gateway import bounds

    def length(column) -> int:
        assert isinstance(column.type, String)
        return column.type.length

    assert min(length(models.Case.thread_id), length(InboundMessage.message_id),
                                    length(models.OutboundMessage.in_reply_to)) >= bounds.MESSAGE_ID
    assert min(length(c) for c in (
        InboundMessage.sender, models.CaseEvent.author, models.Delivery.recipient, models.Contact.email,
        models.Registration.email, models.RegistrationRequest.email, models.LicenceRefusal.sender)) >= bounds.ADDRESS
    assert length(InboundMessage.envelope_from) >= bounds.ENVELOPE
    assert length(InboundMessage.source_key) >= bounds.SOURCE_KEY
    assert length(models.Contact.name) >= bounds.NAME


# -- what a person wrote is kept ------------------------------------------------------------

@pytest.mark.parametrize("form", ["plain", "html link", "html autolink"])
def test_a_body_of_one_100_kb_url_is_kept_whole_on_the_case(loaded, settings, form) -> None:
    number = open_case(loaded, settings)
    if form == "plain":
        msg = mail(CLAIRE, f"[Dossier #{number}] Le lien", URL + "\n")
    else:
        markup = f'<a href="{URL}">{URL}</a>' if form == "html link" else f"<p><{URL}></p>"
        msg = mail(CLAIRE, f"[Dossier #{number}] Le lien")
        msg.set_content(markup, subtype="html")
    outcome, reasons, _ = deliver(loaded, settings, msg)
    assert outcome == "appended", reasons
    with session_scope(loaded) as session:
        texts = session.scalars(select(CaseEvent.text).where(CaseEvent.kind == "customer_message")).all()
    assert [URL in t for t in texts] == [True]
    assert URL in sent_to(loaded, MATHILDE)[-1][2]  # the agents' notice carries it too


def test_a_text_of_several_megabytes_is_kept_whole_on_the_case(loaded, settings) -> None:
    number = open_case(loaded, settings)
    text = "Journal : « tout va bien » 🙂\n" * 200_000  # 6,000,000 characters, 7 MB
    outcome, reasons, _ = deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] Le journal", text))
    assert (outcome, reasons) == ("appended", ["information added"])
    with session_scope(loaded) as session:
        kept = session.scalars(select(CaseEvent.text).where(CaseEvent.kind == "customer_message")).one()
    assert kept == text.strip()

