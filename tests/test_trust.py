"""Trust, over real sockets: an agent is proven, not believed; what changes who may read a
company's cases is confirmed; strangers are told nothing; registration codes cannot be
guessed in bulk."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from harness import CLAIRE, GREGOIRE, MATHILDE, PAUL, confirmation_reply, mail, reply_to, running, send, wired
from sqlalchemy import select

from gateway import views
from gateway.db import session_scope
from gateway.models import CONTACT_ACTIVE, Contact, InboundMessage

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Virements refusés"
ATTACKER = "attaquant@ailleurs.example"


def case_of(engine, number):
    with session_scope(engine) as session:
        return views.case_detail(session, number)


def outcome_of(engine, msg):
    with session_scope(engine) as session:
        row = session.scalars(select(InboundMessage).where(InboundMessage.message_id == msg["Message-ID"])).one()
        return row.outcome, list(row.reasons)


def opened(gw, relay):
    """Claire opens case 1 with Paul in Cc; the agent's notice and Claire's acknowledgement."""
    send(gw.settings, mail(CLAIRE, OPEN, "Nos virements sont refusés.", cc=[PAUL]))
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL, MATHILDE, GREGOIRE})
    relay.clear()
    return next(r for r in got if r.rcpt == MATHILDE), next(r for r in got if r.rcpt == CLAIRE)


def answer_to(relay, rcpt, msg):
    """The gateway's answer to `msg`, as `rcpt` receives it."""
    def found(got):
        return [x for x in got if x.rcpt == rcpt and str(x.message["In-Reply-To"]).strip() == msg["Message-ID"]]
    return found(relay.wait_for(lambda got: bool(found(got))))[-1]


def settle(gw, relay):
    """Wait until everything sent so far is processed: messages are processed in order, so
    once Claire's [SUIVI] is answered, the ones before it have their outcome."""
    probe = mail(CLAIRE, "[SUIVI]")
    send(gw.settings, probe)
    answer_to(relay, CLAIRE, probe)


# -- agents ------------------------------------------------------------------------------

def test_a_forged_agent_reaches_no_customer_until_the_agent_confirms(gateway, relay, engine) -> None:
    opened(gateway, relay)
    forged = mail(MATHILDE, "[Dossier #1] [CLOS] Nouvelles coordonnées bancaires",
                  "Merci d'utiliser désormais l'IBAN FR76 0000 0000 0000.", name="Mathilde Roche")
    send(gateway.settings, forged, sender=ATTACKER)
    ask = relay.wait_for(lambda r: any(x.rcpt == MATHILDE for x in r))[0]
    assert "Confirmez votre message" in ask.subject and "IBAN FR76" in ask.text()
    assert outcome_of(engine, forged)[0] == "held"
    assert case_of(engine, 1)["status"] == "nouveau"
    assert not [r for r in relay.received if r.rcpt in (CLAIRE, PAUL)]
    # The real agent, who did write it, replies to the confirmation: it is applied, once.
    relay.clear()
    send(gateway.settings, reply_to(ask, MATHILDE, "Oui, c'est bien moi."))
    got = relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL})
    assert all("IBAN FR76" in r.text() for r in got if r.rcpt in (CLAIRE, PAUL))
    assert outcome_of(engine, forged)[0] == "appended"
    assert case_of(engine, 1)["status"] == "clos"


def test_a_token_used_from_another_address_proves_nothing(gateway, relay, engine) -> None:
    notice, ack = opened(gateway, relay)
    # The agent's own reply address used by a stranger: a stranger may not write on the case.
    stolen = reply_to(notice, ATTACKER, "Changez d'IBAN.")
    send(gateway.settings, stolen)
    # Claire's reply address used with the agent's From: it proves nothing for the agent.
    forged = mail(MATHILDE, "RE: [Dossier #1] virements", "Changez d'IBAN.", to=str(ack.message["Reply-To"]))
    send(gateway.settings, forged, sender=ATTACKER)
    settle(gateway, relay)
    assert outcome_of(engine, stolen)[0] == "refused"
    assert outcome_of(engine, forged)[0] == "held"
    assert not any("IBAN" in r.text() for r in relay.received if r.rcpt in (CLAIRE, PAUL))
    assert [e["kind"] for e in case_of(engine, 1)["events"]] == ["opened"]


@pytest.fixture
def trusting(settings, loaded, relay, free_port):
    """A gateway that believes the Authentication-Results of mx.editeur.example."""
    trusted = dataclasses.replace(settings, support=dataclasses.replace(
        settings.support, trusted_authserv_id="mx.editeur.example"))
    with running(wired(trusted, free_port(), relay.controller.port), loaded) as gw:
        yield gw


def test_our_mtas_dmarc_pass_for_the_agents_domain_is_proof(trusting, relay, engine) -> None:
    opened(trusting, relay)
    passed = "mx.editeur.example; spf=pass smtp.mailfrom=editeur.example; dmarc=pass header.from=editeur.example"
    send(trusting.settings, mail(MATHILDE, "[Dossier #1] [ATTENTE] Version ?", "Quelle version utilisez-vous ?",
                                 headers={"Authentication-Results": passed}))
    relay.wait_for(lambda r: {x.rcpt for x in r} >= {CLAIRE, PAUL})
    assert case_of(engine, 1)["status"] == "attente_client"
    # A "pass" written by the sender below a field of our MTA that says nothing proves nothing.
    relay.clear()
    forged = mail(MATHILDE, "[Dossier #1] [CLOS] Fermé", "Fermé.", headers={
        "Authentication-Results": "mx.editeur.example; spf=none"})
    forged["Authentication-Results"] = "mx.editeur.example; dmarc=pass header.from=editeur.example"
    send(trusting.settings, forged)
    relay.wait_for(lambda r: any(x.rcpt == MATHILDE and "Confirmez" in x.subject for x in r))
    assert case_of(engine, 1)["status"] == "attente_client"


# -- who may read a company's cases --------------------------------------------------------

def test_a_forged_contact_cannot_add_an_address_that_would_read_the_cases(gateway, relay, engine) -> None:
    opened(gateway, relay)
    forged = mail(CLAIRE, "[INTERLOCUTEUR AJOUT]", f"Nom : Complice\nEmail : {ATTACKER}\n")
    send(gateway.settings, forged, sender=ATTACKER)
    relay.wait_for(lambda r: any(x.rcpt == CLAIRE and "Confirmez" in x.subject for x in r))
    follow = mail(ATTACKER, "[SUIVI]")
    send(gateway.settings, follow)
    answer = answer_to(relay, ATTACKER, follow)
    assert "Virements refusés" not in answer.text() and "#1 " not in answer.text()
    with session_scope(engine) as session:
        assert session.scalar(select(Contact.status).where(Contact.email == ATTACKER)) is None
    # Claire did mean it: her reply to the confirmation adds the contact.
    send(gateway.settings, confirmation_reply(engine, CLAIRE))
    relay.wait_for(lambda r: any(x.rcpt == ATTACKER and "Boulangeries" in x.text() for x in r))
    with session_scope(engine) as session:
        assert session.scalar(select(Contact.status).where(Contact.email == ATTACKER)) == CONTACT_ACTIVE


# -- strangers -----------------------------------------------------------------------------

def _refusal_parts(received):
    return received.subject, received.text(), received.html()


def test_a_stranger_gets_the_same_refusal_for_any_case_number(gateway, relay, engine) -> None:
    opened(gateway, relay)
    stranger = "curieux@ailleurs.example"
    existing, missing = (mail(stranger, f"[Dossier #{n}] Bonjour", "Où en est ce dossier ?") for n in (1, 7))
    send(gateway.settings, existing)
    send(gateway.settings, missing)
    first, second = answer_to(relay, stranger, existing), answer_to(relay, stranger, missing)
    for a, b in zip(_refusal_parts(first), _refusal_parts(second)):
        assert re.sub(r"#1(?![0-9a-f])", "#7", a) == b


# -- registration codes ------------------------------------------------------------------------

NEWCOMER = "julie.noel@boulangeries-lefevre.example"
REGISTER = "[INSCRIPTION] [CLIENT C10042] [SERIE SN-7F3A-2291]"


def _code_mail(relay):
    got = relay.wait_for(lambda r: any(x.rcpt == NEWCOMER and re.search(r"\b\d{6}\b", x.text()) for x in r))
    return next(r for r in got if r.rcpt == NEWCOMER and re.search(r"\b\d{6}\b", r.text()))


def test_a_message_listing_every_code_activates_nothing(gateway, relay, engine) -> None:
    send(gateway.settings, mail(NEWCOMER, REGISTER, name="Julie Noël"))
    _code_mail(relay)
    every = "\n".join(f"{n:06d}" for n in range(0, 1_000_000, 7)) + "\n"
    flood = mail(NEWCOMER, "RE: votre code", every)
    send(gateway.settings, flood)
    assert "erroné" in answer_to(relay, NEWCOMER, flood).text()
    with session_scope(engine) as session:
        assert session.scalar(select(Contact.status).where(Contact.email == NEWCOMER)) == "pending"


def test_a_few_wrong_codes_end_the_registration(gateway, relay, engine) -> None:
    send(gateway.settings, mail(NEWCOMER, REGISTER, name="Julie Noël"))
    code = re.search(r"\b(\d{6})\b", _code_mail(relay).text()).group(1)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    tries = [mail(NEWCOMER, f"[INSCRIPTION {wrong}]") for _ in range(5)]
    for attempt in tries:
        send(gateway.settings, attempt)
    assert "annulée" in " ".join(answer_to(relay, NEWCOMER, tries[-1]).text().split())
    send(gateway.settings, mail(NEWCOMER, f"[INSCRIPTION {code}]"))
    settle(gateway, relay)
    with session_scope(engine) as session:
        assert session.scalar(select(Contact.status).where(Contact.email == NEWCOMER)) == "pending"


# -- loops ---------------------------------------------------------------------------------

class Forwarder:
    """Claire's and Paul's mailboxes forward everything they get to the support address, as
    careless forwarders do: a new Message-ID, their own From, every header of ours dropped."""

    def __init__(self, settings, relay) -> None:
        self.settings, self.relay, self.sent = settings, relay, 0
        relay.on_received = self.forward

    def forward(self, received) -> None:
        if received.rcpt not in (CLAIRE, PAUL) or self.sent >= 50:
            return
        self.sent += 1
        copy = mail(received.rcpt, f"TR: {received.subject}", received.text())
        send(self.settings, copy)


def idle(engine, timeout: float = 20.0) -> None:
    """Wait until nothing is left to process or to send, five looks in a row."""
    import time

    from sqlalchemy import func

    from gateway.models import Delivery
    deadline, calm = time.monotonic() + timeout, 0
    while calm < 5:
        assert time.monotonic() < deadline, "the gateway never went idle"
        with session_scope(engine) as session:
            busy = session.scalar(select(func.count()).select_from(InboundMessage)
                                  .where(InboundMessage.outcome == "pending"))
            busy += session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "pending"))
        calm = calm + 1 if busy == 0 else 0
        time.sleep(0.1)


def test_two_mailboxes_forwarding_everything_back_stop_by_themselves(gateway, relay, engine) -> None:
    forwarder = Forwarder(gateway.settings, relay)
    send(gateway.settings, mail(CLAIRE, OPEN, "Nos virements sont refusés depuis ce matin.", cc=[PAUL]))
    idle(engine)
    assert forwarder.sent <= 4 and len(relay.log) <= 8, (forwarder.sent, len(relay.log))
    with session_scope(engine) as session:
        rows = session.execute(select(InboundMessage.outcome, InboundMessage.reasons)
                               .where(InboundMessage.subject.like("TR:%"))).all()
    assert rows and all(outcome == "ignored" and "loop" in reasons[0] for outcome, reasons in rows)
    assert [e["kind"] for e in case_of(engine, 1)["events"]] == ["opened"]


# -- caps --------------------------------------------------------------------------------------

def _deliveries(engine, address):
    """(kind, status, text) of every delivery queued for `address`, oldest first."""
    from gateway.models import Delivery, OutboundMessage
    with session_scope(engine) as session:
        return [(m.kind, d.status, m.text) for d, m in session.execute(
            select(Delivery, OutboundMessage).join(OutboundMessage)
            .where(Delivery.recipient == address).order_by(Delivery.id))]


def test_thirty_replies_on_a_case_give_five_notices_then_one_digest(loaded, settings) -> None:
    from test_rules import deliver, open_case

    from gateway.db import utcnow
    from gateway.outbound import digest
    now = utcnow()
    number = open_case(loaded, settings, cc=[PAUL])
    for i in range(30):
        deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] précision {i}", f"Précision numéro {i}."),
                now=now + dt.timedelta(seconds=i))
    statuses = [s for _, s, _ in _deliveries(loaded, PAUL)]  # the acknowledgement's copy, then 30 notices
    assert statuses.count("pending") == 5 and statuses.count("held_back") == 26
    assert digest.flush(loaded, settings, now + dt.timedelta(minutes=14)) == 0  # the window is not over
    assert digest.flush(loaded, settings, now + dt.timedelta(minutes=16)) >= 1
    [(kind, status, text)] = [d for d in _deliveries(loaded, PAUL) if d[0] == "notice_digest"]
    assert status == "pending" and all(f"Précision numéro {i}." in text for i in range(4, 30))
    assert [s for k, s, _ in _deliveries(loaded, PAUL) if k == "case_message"].count("merged") == 26


def test_a_flood_of_openings_always_acknowledges_the_opener(loaded, settings) -> None:
    from test_rules import OPEN as OPENING
    from test_rules import deliver

    for i in range(30):
        deliver(loaded, settings, mail(CLAIRE, f"{OPENING} {i}", cc=[PAUL]))
    acks = [s for k, s, _ in _deliveries(loaded, CLAIRE) if k == "case_opened"]
    assert acks == ["pending"] * 30  # every opener gets their case number
    for colleague in (PAUL, MATHILDE, GREGOIRE):
        statuses = [s for _, s, _ in _deliveries(loaded, colleague)]
        assert statuses.count("pending") == 5 and statuses.count("held_back") == 25, colleague


def test_forged_strangers_get_bounded_answers(loaded, settings) -> None:
    from test_rules import deliver

    capped = dataclasses.replace(settings, support=dataclasses.replace(settings.support, stranger_answers_per_hour=5))
    for i in range(30):
        deliver(loaded, capped, mail(f"victime{i}@ailleurs.example", "[Dossier #1] Bonjour"))
    answered = [i for i in range(30) if _deliveries(loaded, f"victime{i}@ailleurs.example")]
    assert answered == list(range(5))
    # Where our MTA says the sender's domain did not pass, a stranger gets no answer at all.
    trusting = dataclasses.replace(settings, support=dataclasses.replace(
        settings.support, trusted_authserv_id="mx.editeur.example"))
    failing = mail("inconnu@ailleurs.example", "[Dossier #1] Bonjour",
                   headers={"Authentication-Results": "mx.editeur.example; spf=softfail smtp.mailfrom=ailleurs.example"})
    outcome, reasons, _ = deliver(loaded, trusting, failing)
    assert outcome == "refused" and "not authenticated" in reasons[-1]
    assert _deliveries(loaded, "inconnu@ailleurs.example") == []


def test_an_empty_reply_to_a_confirmation_is_a_confirmation(gateway, relay, engine) -> None:
    opened(gateway, relay)
    forged = mail(MATHILDE, "[Dossier #1] [ATTENTE] Version ?", "Quelle version utilisez-vous exactement ?")
    send(gateway.settings, forged)
    ask = answer_to(relay, MATHILDE, forged)
    # Outlook's reply with nothing typed: our whole mail below a header block, unquoted.
    empty = mail(MATHILDE, f"RE: {ask.subject}", f"\nDe : Support\nEnvoyé : lundi\nObjet : {ask.subject}\n\n{ask.text()}",
                 to=str(ask.message["Reply-To"]))
    send(gateway.settings, empty)
    relay.wait_for(lambda r: any(x.rcpt == CLAIRE for x in r))
    assert case_of(engine, 1)["status"] == "attente_client"
