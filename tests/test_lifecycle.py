"""The user guide as a story, over real sockets: Claire opens a case with Paul in Cc, is
acknowledged, an agent asks for a log, Claire sends it, the agent resolves, Claire closes."""
from __future__ import annotations

from harness import CLAIRE, GREGOIRE, MATHILDE, PAUL, mail, reply_to, send
from sqlalchemy import select

from gateway import views
from gateway.db import session_scope
from gateway.models import InboundMessage


def case_of(engine, number):
    with session_scope(engine) as session:
        return views.case_detail(session, number)


def test_claire_opens_follows_and_closes_a_case(gateway, relay, engine) -> None:
    settings = gateway.settings
    opening = mail(CLAIRE, "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles à éditer",
                   "Bonjour,\n\nL'édition des factures s'arrête avec l'erreur 0x80004005.\n\nCordialement,\nClaire",
                   cc=[PAUL], name="Claire Martin")
    send(settings, opening)

    # Claire (To) and Paul (Cc) get the acknowledgement; both agents are told.
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL, MATHILDE, GREGOIRE})
    ack = next(r for r in got if r.rcpt == CLAIRE)
    assert ack.subject == "[Dossier #1] Factures impossibles à éditer"
    assert ack.message["To"].addresses[0].addr_spec == CLAIRE
    assert [a.addr_spec for a in ack.message["Cc"].addresses] == [PAUL]
    assert ack.message["Auto-Submitted"] == "auto-replied"
    assert ack.message["In-Reply-To"].strip() == opening["Message-ID"]
    assert str(ack.message["Reply-To"].addresses[0].addr_spec).startswith("assistance+1-")
    assert "#1" in ack.text() and "haute" in ack.text()
    paul_copy = next(r for r in got if r.rcpt == PAUL)
    assert paul_copy.message["Reply-To"] != ack.message["Reply-To"]  # a token per recipient
    notice = next(r for r in got if r.rcpt == MATHILDE)
    assert "0x80004005" in notice.text()
    case = case_of(engine, 1)
    assert case["status"] == "nouveau" and case["distribution_list"] == [PAUL]
    assert case["main_contact"] == CLAIRE and case["criticality"] == 2

    # The agent answers the notice and asks for a log: the case waits for the customer.
    relay.clear()
    send(settings, reply_to(notice, MATHILDE, "Bonjour Claire,\n\nPouvez-vous nous envoyer le journal ?",
                            subject=f"[ATTENTE] RE: {notice.subject}"))
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL})
    question = next(r for r in got if r.rcpt == CLAIRE)
    assert "journal" in question.text()
    assert question.message["Auto-Submitted"] is None  # a person's answer, not automatic mail
    assert all(r.rcpt not in (MATHILDE, GREGOIRE) for r in got)
    assert case_of(engine, 1)["status"] == "attente_client"

    # Claire answers from her mail client, with the log attached; the subject is mangled.
    relay.clear()
    answer = reply_to(question, CLAIRE, "Voici le journal demandé.", subject="RE: le journal",
                      attachments=[("journal.log", b"ERROR 0x80004005 at line 42\n", "text/plain")])
    send(settings, answer)
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {PAUL, MATHILDE, GREGOIRE})
    assert all(r.rcpt != CLAIRE for r in got)  # never the author
    case = case_of(engine, 1)
    assert case["status"] == "en_cours"
    assert case["attachments"][0]["filename"] == "journal.log"
    last = case["events"][-1]
    assert last["kind"] == "customer_message" and last["text"] == "Voici le journal demandé."

    # The agent resolves; Claire closes.
    relay.clear()
    agent_copy = next(r for r in got if r.rcpt == MATHILDE)
    send(settings, reply_to(agent_copy, MATHILDE, "Le correctif est appliqué.",
                            subject=f"[RESOLU] RE: {agent_copy.subject}"))
    relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL})
    assert case_of(engine, 1)["status"] == "resolu"
    resolved = relay.to(CLAIRE)[0]
    relay.clear()
    send(settings, reply_to(resolved, CLAIRE, "Merci, tout fonctionne.", subject="[CLOTURE] RE: merci"))
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL, MATHILDE})
    case = case_of(engine, 1)
    assert case["status"] == "clos"
    kinds = [e["kind"] for e in case["events"]]
    assert kinds == ["opened", "agent_message", "status_change", "customer_message",
                     "agent_message", "status_change", "closed"]
    with session_scope(engine) as session:
        outcomes = list(session.scalars(select(InboundMessage.outcome).order_by(InboundMessage.id)))
    assert outcomes == ["created", "appended", "appended", "appended", "appended"]
