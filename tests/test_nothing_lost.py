"""Nothing is lost between the customer and the agent: every word and every code, read in
the mail the other side receives, over real sockets (SMTP door in, relay stand-in out)."""
from __future__ import annotations

import pytest
from harness import CLAIRE, GREGOIRE, MATHILDE, PAUL, mail, reply_to, send
from sqlalchemy import select
from test_cli import Cli, assert_clean_failure, write_config

from gateway import views
from gateway.db import session_scope
from gateway.models import InboundMessage

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Lettrage impossible"


def case_of(engine, number):
    with session_scope(engine) as session:
        return views.case_detail(session, number)


def last_outcome(engine):
    with session_scope(engine) as session:
        row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        return row.outcome, list(row.reasons), row.case_id


def opened(gateway, relay, subject=OPEN, body="Bonjour,\n\nLe lettrage s'arrête.\n", **kw):
    """Open a case as Claire; the agent's notice and Claire's acknowledgement."""
    send(gateway.settings, mail(CLAIRE, subject, body, name="Claire Martin", **kw))
    everyone = {CLAIRE, MATHILDE, GREGOIRE, *kw.get("cc", [])}
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= everyone)
    relay.clear()
    return next(r for r in got if r.rcpt == MATHILDE), next(r for r in got if r.rcpt == CLAIRE)


# -- words -----------------------------------------------------------------------------

def test_a_customers_sentence_with_a_colon_reaches_the_agent(gateway, relay, engine) -> None:
    notice, ack = opened(gateway, relay)
    sentence = "Voici une précision : cela arrive seulement sur le poste 3."
    send(gateway.settings, reply_to(ack, CLAIRE, f"{sentence}\n\nCordialement,\nClaire"))
    got = next(r for r in relay.wait_for(lambda r: any(x.rcpt == MATHILDE for x in r)) if r.rcpt == MATHILDE)
    assert sentence in " ".join(got.text().split())
    assert case_of(engine, 1)["events"][-1]["text"].startswith(sentence)


def test_an_agents_answer_with_a_colon_reaches_the_customer_whole(gateway, relay, engine) -> None:
    notice, _ack = opened(gateway, relay)
    answer = "Solution: install patch 4.3.0 and restart the banking service."
    send(gateway.settings, reply_to(notice, MATHILDE, f"{answer}\n\nMathilde Roche"))
    got = relay.wait_for(lambda r: any(x.rcpt == CLAIRE for x in r))
    claire = next(r for r in got if r.rcpt == CLAIRE)
    assert answer in claire.text() and answer in claire.html()


def test_a_new_cases_first_lines_as_the_guide_asks_are_kept_everywhere(gateway, relay, engine) -> None:
    lines = ["Menu : Traitement > Lettrage automatique", "Message d'erreur : Code 52",
             "Circonstances : depuis la clôture"]
    notice, ack = opened(gateway, relay, body="\n".join(lines) + "\n\nMerci de votre aide.\n")
    for line in lines:
        assert line in notice.text(), line
        assert line in case_of(engine, 1)["events"][0]["text"]
    assert "Merci de votre aide." in notice.text()


def test_body_fields_are_read_and_removed_only_when_used(gateway, relay, engine) -> None:
    body = ("Code client : c10042\nNuméro de série : sn 7f3a 2291\nNiveau de criticité : 2\n"
            "Menu : Ventes > Factures\n\nL'édition plante.\n")
    notice, ack = opened(gateway, relay, subject="Factures bloquées", body=body)
    text = case_of(engine, 1)["events"][0]["text"]
    assert text == "Menu : Ventes > Factures\n\nL'édition plante."
    assert "Menu : Ventes > Factures" in notice.text() and "Code client" not in notice.text()
    # On a follow-up the serial is not used: the customer's line stays in the text.
    send(gateway.settings, reply_to(ack, CLAIRE, "N° de série : SN-7F3A-2291\nLe poste 3 aussi."))
    got = relay.wait_for(lambda r: any(x.rcpt == MATHILDE for x in r))
    assert "N° de série : SN-7F3A-2291" in next(r for r in got if r.rcpt == MATHILDE).text()


# -- codes -----------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    "[CLIENT c10042] [SERIE sn-7f3a-2291] [CRITICITE haute]",
    "[Code client: C 10042] [N° de série SN 7F3A 2291] [Niveau de criticité=2]",
    "[customer C10042] [Serial number: sn.7f3a.2291] [severity high]",
])
def test_codes_and_serials_are_read_however_they_are_typed(gateway, relay, engine, fields) -> None:
    notice, ack = opened(gateway, relay, subject=f"{fields} Lettrage impossible")
    assert ack.subject == "[Dossier #1] Lettrage impossible"
    assert "SN-7F3A-2291" in notice.text()  # shown as the reference data writes it
    assert case_of(engine, 1)["serial"] == "SN-7F3A-2291"


@pytest.mark.parametrize("label", ["N° de série", "No de série", "Numéro de série", "Serial number",
                                   "N° série", "SN"])
def test_every_usual_serial_label_works_in_the_body(gateway, relay, engine, label) -> None:
    body = f"Client code : C10042\n{label} : SN-7F3A-2291\nCriticité : haute\n\nTout est bloqué.\n"
    opened(gateway, relay, subject="Tout est bloqué", body=body)
    assert case_of(engine, 1)["events"][0]["text"] == "Tout est bloqué."


def test_a_contact_who_mistypes_the_client_code_is_told_her_own(gateway, relay, engine) -> None:
    send(gateway.settings, mail(CLAIRE, "[CLIENT C10024] [SERIE SN-7F3A-2291] [CRITICITE 2] Lettrage"))
    [refusal] = relay.wait_for(lambda r: any(x.rcpt == CLAIRE for x in r))
    text = " ".join(refusal.text().split())
    assert "C10024" in text and "enregistrée pour le client C10042" in text
    assert last_outcome(engine)[0] == "refused"


def test_a_stranger_with_a_real_code_learns_nothing(gateway, relay, engine) -> None:
    stranger = "someone@elsewhere.example"
    send(gateway.settings, mail(stranger, "[CLIENT c10042] [SERIE SN-7F3A-2291] [CRITICITE 2] Lettrage"))
    [refusal] = relay.wait_for(lambda r: any(x.rcpt == stranger for x in r))
    assert "Boulangeries" not in refusal.text() and "enregistrée pour" not in refusal.text()
    assert PAUL not in refusal.text()


# -- files -----------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
LOG = b"2026-11-30 10:02 ERREUR lettrage : code 52\n" * 40
PATCH = bytes(range(256)) * 200


def files_of(message):
    """{filename: (content type, bytes, disposition, Content-ID)} of a received mail's files."""
    return {part.get_filename(): (part.get_content_type(), part.get_payload(decode=True),
                                  part.get_content_disposition(), str(part.get("Content-ID", "")))
            for part in message.walk() if part.get_filename()}


def with_inline_screenshot(sender, subject, text, cc=None):
    """A mail as Thunderbird writes one with a pasted screenshot and an attached log."""
    msg = mail(sender, subject, text, cc=cc)
    msg.add_alternative(f"<p>{text}</p><p><img src=\"cid:shot1@claire\"></p>", subtype="html")
    msg.get_payload()[1].add_related(PNG, "image", "png", cid="<shot1@claire>", filename="capture.png",
                                     disposition="inline")
    msg.add_attachment(LOG, "text", "plain", filename="journal-lettrage.log")
    return msg


def test_a_customers_files_reach_the_agents_as_real_attachments(gateway, relay, engine) -> None:
    send(gateway.settings, with_inline_screenshot(CLAIRE, OPEN, "Voici la capture et le journal.", cc=[PAUL]))
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL, MATHILDE, GREGOIRE})
    notice = next(r for r in got if r.rcpt == MATHILDE)
    files = files_of(notice.message)
    assert files["journal-lettrage.log"][:3] == ("text/plain", LOG, "attachment")
    ctype, data, disposition, cid = files["capture.png"]
    assert (ctype, data, disposition) == ("image/png", PNG, "inline")
    related = next(p for p in notice.message.walk() if p.get_content_type() == "multipart/related")
    assert f"cid:{cid.strip('<>')}" in related.get_body(("html",)).get_content()
    assert "capture.png" in notice.text() and "journal-lettrage.log" in notice.text()
    # The colleague in Cc gets them with the acknowledgement too.
    assert files_of(next(r for r in got if r.rcpt == PAUL).message)["journal-lettrage.log"][1] == LOG


def test_an_agents_file_reaches_every_copy_of_the_answer(gateway, relay, engine) -> None:
    notice, _ack = opened(gateway, relay, cc=[PAUL])
    send(gateway.settings, reply_to(notice, MATHILDE, "Voici le correctif à installer.",
                                    attachments=[("correctif-9.01.zip", PATCH, "application/zip")]))
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL})
    for copy in (r for r in got if r.rcpt in (CLAIRE, PAUL)):
        assert files_of(copy.message)["correctif-9.01.zip"][:3] == ("application/zip", PATCH, "attachment")
        assert "correctif-9.01.zip" in copy.text()


@pytest.fixture
def small_mails(settings, loaded, relay, free_port):
    """A gateway whose mails carry at most 50,000 bytes of files."""
    import dataclasses

    from harness import running, wired
    limited = dataclasses.replace(settings, outbound=dataclasses.replace(settings.outbound, max_attachment_bytes=50_000))
    with running(wired(limited, free_port(), relay.controller.port), loaded) as gw:
        yield gw


def test_a_file_too_big_to_travel_is_named_and_the_operator_takes_it_out(small_mails, relay, engine, tmp_path) -> None:
    big = bytes(range(256)) * 300  # 76,800 bytes
    send(small_mails.settings, mail(CLAIRE, OPEN, "Voici la base et le journal.",
                                    attachments=[("base.zip", big, "application/zip"),
                                                 ("journal.log", LOG, "text/plain")]))
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, MATHILDE})
    notice = next(r for r in got if r.rcpt == MATHILDE)
    assert set(files_of(notice.message)) == {"journal.log"}
    text = " ".join(notice.text().split())
    assert "base.zip (75 Ko) : trop volumineux pour être joint à ce message" in text
    cli = Cli(write_config(tmp_path / "gateway.toml", small_mails.settings.database_url))
    file_id = next(f["id"] for f in cli.json("attachments", "list", "1") if f["filename"] == "base.zip")
    assert f"gateway attachments get 1 {file_id}" in text
    out = tmp_path / "base-copy.zip"
    cli.ok("attachments", "get", "1", str(file_id), "--output", str(out))
    assert out.read_bytes() == big
    assert_clean_failure(cli("attachments", "get", "1", str(file_id), "--output", str(out)), "exists")
    assert_clean_failure(cli("attachments", "get", "2", str(file_id)), "case 2 has no file")
    ack = " ".join(next(r for r in got if r.rcpt == CLAIRE).text().split())
    assert "base.zip (75 Ko) : trop volumineux" in ack and "répondez à ce message" in ack


def test_an_internal_notes_files_never_reach_a_customer(gateway, relay, engine) -> None:
    notice, ack = opened(gateway, relay, cc=[PAUL])
    send(gateway.settings, reply_to(notice, MATHILDE, "Licence à vérifier avec l'ADV.", subject=f"[NOTE] {notice.subject}",
                                    attachments=[("contrat-interne.pdf", b"%PDF-1.4 interne", "application/pdf")]))
    send(gateway.settings, reply_to(notice, MATHILDE, "Nous regardons votre dossier."))
    send(gateway.settings, mail(CLAIRE, "[SUIVI #1]"))
    got = relay.wait_for(lambda r: sum(x.rcpt == CLAIRE for x in r) >= 2 and any(x.rcpt == PAUL for x in r))
    for r in got:
        if r.rcpt in (CLAIRE, PAUL):
            assert "contrat-interne" not in r.message.as_string()
            assert "contrat-interne.pdf" not in files_of(r.message)


# -- a person's answer -----------------------------------------------------------------

@pytest.mark.parametrize("body", ["Le correctif 9.01 est en ligne.",
                                  "Le correctif 9.01 est en ligne.\n\nBien à vous,\nMathilde Roche"])
def test_an_agents_answer_is_not_automatic_mail_and_is_signed_once(gateway, relay, engine, body) -> None:
    notice, _ack = opened(gateway, relay)
    send(gateway.settings, reply_to(notice, MATHILDE, body, name="Mathilde Roche"))
    claire = next(r for r in relay.wait_for(lambda r: any(x.rcpt == CLAIRE for x in r)) if r.rcpt == CLAIRE)
    assert claire.message["Auto-Submitted"] is None
    assert claire.message["X-Auto-Response-Suppress"] == "All"
    assert claire.message["X-Loop"] == "assistance@editeur.example"
    assert "Le correctif 9.01 est en ligne." in claire.text()
    assert claire.text().count("Mathilde Roche") == 1
    assert claire.html().count("Mathilde Roche") == 1
    # The gateway's own answers stay automatic.
    assert notice.message["Auto-Submitted"] == "auto-replied"


def test_an_answer_forwarded_back_by_a_mailbox_is_recognised(gateway, relay, engine) -> None:
    notice, ack = opened(gateway, relay)
    send(gateway.settings, reply_to(notice, MATHILDE, "Pouvez-vous redémarrer le service ?"))
    claire = next(r for r in relay.wait_for(lambda r: any(x.rcpt == CLAIRE for x in r)) if r.rcpt == CLAIRE)
    relay.clear()
    # Claire's mailbox forwards everything to the support address: a new From, the
    # gateway's other headers kept (an agent's answer has no Auto-Submitted to strip).
    forwarded = mail(CLAIRE, claire.subject, claire.text(), headers={
        "X-Loop": str(claire.message["X-Loop"]), "References": str(claire.message["Message-ID"])})
    send(gateway.settings, forwarded)
    # Messages are processed in order: once Claire's next request is answered, the forwarded
    # copy has its outcome.
    send(gateway.settings, mail(CLAIRE, "[SUIVI]"))
    relay.wait_for(lambda r: any(x.rcpt == CLAIRE for x in r))
    with session_scope(engine) as session:
        row = session.scalars(select(InboundMessage).where(
            InboundMessage.message_id == forwarded["Message-ID"])).one()
        assert (row.outcome, row.reasons) == ("ignored", ["message from the support address itself (loop)"])
    assert not any(r.rcpt in (MATHILDE, GREGOIRE) for r in relay.received)
