"""Nothing is lost between the customer and the agent: every word and every code, read in
the mail the other side receives, over real sockets (SMTP door in, relay stand-in out)."""
from __future__ import annotations

import pytest
from harness import CLAIRE, GREGOIRE, MATHILDE, PAUL, mail, reply_to, send
from sqlalchemy import select

from gateway import views
from gateway.db import session_scope
from gateway.models import InboundMessage

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Lettrage impossible"


def case_of(engine, number):  # noqa: ANN001, ANN201
    with session_scope(engine) as session:
        return views.case_detail(session, number)


def last_outcome(engine):  # noqa: ANN001, ANN201
    with session_scope(engine) as session:
        row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        return row.outcome, list(row.reasons), row.case_id


def opened(gateway, relay, subject=OPEN, body="Bonjour,\n\nLe lettrage s'arrête.\n", **kw):  # noqa: ANN001, ANN003, ANN201
    """Open a case as Claire; the agent's notice and Claire's acknowledgement."""
    send(gateway.settings, mail(CLAIRE, subject, body, name="Claire Martin", **kw))
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, MATHILDE, GREGOIRE})
    relay.clear()
    return next(r for r in got if r.rcpt == MATHILDE), next(r for r in got if r.rcpt == CLAIRE)


# -- words -----------------------------------------------------------------------------

def test_a_customers_sentence_with_a_colon_reaches_the_agent(gateway, relay, engine) -> None:  # noqa: ANN001
    notice, ack = opened(gateway, relay)
    sentence = "Voici une précision : cela arrive seulement sur le poste 3."
    send(gateway.settings, reply_to(ack, CLAIRE, f"{sentence}\n\nCordialement,\nClaire"))
    got = next(r for r in relay.wait_for(lambda r: any(x.rcpt == MATHILDE for x in r)) if r.rcpt == MATHILDE)
    assert sentence in " ".join(got.text().split())
    assert case_of(engine, 1)["events"][-1]["text"].startswith(sentence)


def test_an_agents_answer_with_a_colon_reaches_the_customer_whole(gateway, relay, engine) -> None:  # noqa: ANN001
    notice, _ack = opened(gateway, relay)
    answer = "Solution: install patch 4.3.0 and restart the banking service."
    send(gateway.settings, reply_to(notice, MATHILDE, f"{answer}\n\nMathilde Roche"))
    got = relay.wait_for(lambda r: any(x.rcpt == CLAIRE for x in r))
    claire = next(r for r in got if r.rcpt == CLAIRE)
    assert answer in claire.text() and answer in claire.html()


def test_a_new_cases_first_lines_as_the_guide_asks_are_kept_everywhere(gateway, relay, engine) -> None:  # noqa: ANN001
    lines = ["Menu : Traitement > Lettrage automatique", "Message d'erreur : Code 52",
             "Circonstances : depuis la clôture"]
    notice, ack = opened(gateway, relay, body="\n".join(lines) + "\n\nMerci de votre aide.\n")
    for line in lines:
        assert line in notice.text(), line
        assert line in case_of(engine, 1)["events"][0]["text"]
    assert "Merci de votre aide." in notice.text()


def test_body_fields_are_read_and_removed_only_when_used(gateway, relay, engine) -> None:  # noqa: ANN001
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
def test_codes_and_serials_are_read_however_they_are_typed(gateway, relay, engine, fields) -> None:  # noqa: ANN001
    notice, ack = opened(gateway, relay, subject=f"{fields} Lettrage impossible")
    assert ack.subject == "[Dossier #1] Lettrage impossible"
    assert "SN-7F3A-2291" in notice.text()  # shown as the reference data writes it
    assert case_of(engine, 1)["serial"] == "SN-7F3A-2291"


@pytest.mark.parametrize("label", ["N° de série", "No de série", "Numéro de série", "Serial number",
                                   "N° série", "SN"])
def test_every_usual_serial_label_works_in_the_body(gateway, relay, engine, label) -> None:  # noqa: ANN001
    body = f"Client code : C10042\n{label} : SN-7F3A-2291\nCriticité : haute\n\nTout est bloqué.\n"
    opened(gateway, relay, subject="Tout est bloqué", body=body)
    assert case_of(engine, 1)["events"][0]["text"] == "Tout est bloqué."


def test_a_contact_who_mistypes_the_client_code_is_told_her_own(gateway, relay, engine) -> None:  # noqa: ANN001
    send(gateway.settings, mail(CLAIRE, "[CLIENT C10024] [SERIE SN-7F3A-2291] [CRITICITE 2] Lettrage"))
    [refusal] = relay.wait_for(lambda r: any(x.rcpt == CLAIRE for x in r))
    text = " ".join(refusal.text().split())
    assert "C10024" in text and "enregistrée pour le client C10042" in text
    assert last_outcome(engine)[0] == "refused"


def test_a_stranger_with_a_real_code_learns_nothing(gateway, relay, engine) -> None:  # noqa: ANN001
    stranger = "someone@elsewhere.example"
    send(gateway.settings, mail(stranger, "[CLIENT c10042] [SERIE SN-7F3A-2291] [CRITICITE 2] Lettrage"))
    [refusal] = relay.wait_for(lambda r: any(x.rcpt == stranger for x in r))
    assert "Boulangeries" not in refusal.text() and "enregistrée pour" not in refusal.text()
    assert PAUL not in refusal.text()
