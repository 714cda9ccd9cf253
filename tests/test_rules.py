"""The rules of PRODUCT.md items 1-5 and 9, through the real pipeline on stored messages
(intake.store then run.process, as every door does), checked on the outbox and the case."""
from __future__ import annotations

import dataclasses
import datetime as dt
import shutil

import pytest
from harness import ADV, CLAIRE, GREGOIRE, HELENE, MATHILDE, OLIVER, PAUL, SUPPORT, agent_mail, mail
from sqlalchemy import func, select

from gateway import intake, views
from gateway.address import SupportAddress
from gateway.db import session_scope, utcnow
from gateway.models import Case, Contract, Delivery, InboundMessage, LicenceRefusal, OutboundMessage, PointsEntry
from gateway.outbound import token
from gateway.pipeline import run

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"


def deliver(engine, settings, msg, envelope_from=None, envelope_to=None, now=None):
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    stored = intake.store(engine, raw, "pipe", envelope_from, envelope_to)
    run.process(engine, settings, stored.id, now=now)
    with session_scope(engine) as session:
        row = session.get(InboundMessage, stored.id)
        return row.outcome, list(row.reasons), row.case_id


def sent_to(engine, address):
    """(kind, subject, text, message) of everything queued for `address`, oldest first."""
    with session_scope(engine) as session:
        rows = session.execute(select(OutboundMessage).join(Delivery)
                               .where(Delivery.recipient == address).order_by(Delivery.id)).scalars()
        return [(m.kind, m.subject, m.text, m) for m in rows]


def case_detail(engine, number):
    with session_scope(engine) as session:
        return views.case_detail(session, number)


def open_case(engine, settings, **kw):
    outcome, reasons, case = deliver(engine, settings, mail(CLAIRE, kw.pop("subject", OPEN), **kw))
    assert outcome == "created", reasons
    return case


# -- opening ---------------------------------------------------------------------------

def test_opening_acknowledges_and_notifies_agents(loaded, settings) -> None:
    number = open_case(loaded, settings, cc=[PAUL, "stranger@elsewhere.example"])
    [(kind, subject, text, _)] = sent_to(loaded, CLAIRE)
    assert kind == "case_opened" and subject == f"[Dossier #{number}] Factures impossibles"
    assert "stranger@elsewhere.example" in text  # listed as not added
    assert sent_to(loaded, PAUL)[0][0] == "case_opened"
    assert sent_to(loaded, MATHILDE)[0][0] == "agent_new_case"
    assert sent_to(loaded, GREGOIRE)[0][0] == "agent_new_case"
    assert sent_to(loaded, "stranger@elsewhere.example") == []
    assert case_detail(loaded, number)["distribution_list"] == [PAUL]


@pytest.mark.parametrize("subject, problem", [
    ("[SERIE SN-7F3A-2291] [CRITICITE haute] Sans client", "missing_client"),
    ("[CLIENT C10042] [CRITICITE haute] Sans série", "missing_serial"),
    ("[CLIENT C10042] [SERIE SN-7F3A-2291] Sans criticité", "missing_criticality"),
    ("[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE terrible] Mauvaise criticité", "bad_criticality"),
    ("[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE 2]", "missing_title"),
    ("[CLIENT C10042] [SERIE SN-88C1-5530] [CRITICITE 2] Licence d'un autre client", "unknown_serial"),
    ("[CLIENT C10042] [SERIE SN-NOPE] [CRITICITE 2] Licence inconnue", "unknown_serial"),
    ("[CLIENT C20077] [SERIE SN-88C1-5530] [CRITICITE 2] Autre client", "not_a_contact"),
    ("[CLIENT C99999] [SERIE SN-7F3A-2291] [CRITICITE 2] Client inconnu", "not_a_contact"),
    ("[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE 2] [MODULE Paie] Mauvais module", "unknown_module"),
    ("[Dossier #999] Un dossier qui n'existe pas", "case_not_found"),
    ("[INFO] Sans dossier", "needs_case"),
])
def test_refusals_say_what_was_wrong_with_an_example(loaded, settings, subject, problem) -> None:
    outcome, reasons, case = deliver(loaded, settings, mail(CLAIRE, subject))
    assert outcome == "refused" and case is None
    assert reasons[0].startswith(problem)
    [(kind, _subject, text, _)] = sent_to(loaded, CLAIRE)
    assert kind == "refusal"
    assert "[CLIENT C10042]" in text or "[Dossier #" in text  # an example of how to write it
    with session_scope(loaded) as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0


def test_refusals_never_disclose_another_clients_data(loaded, settings) -> None:
    deliver(loaded, settings, mail(CLAIRE, "[CLIENT C10042] [SERIE SN-88C1-5530] [CRITICITE 2] Test"))
    deliver(loaded, settings, mail(CLAIRE, "[CLIENT C20077] [SERIE SN-88C1-5530] [CRITICITE 2] Test"))
    for _kind, _subject, text, message in sent_to(loaded, CLAIRE):
        for secret in ("Clinique", "Léman", "Comptabilité 100", HELENE):
            assert secret not in text and secret not in message.html


def test_missing_details_and_no_attachment_is_refused(loaded, settings) -> None:
    outcome, reasons, _ = deliver(loaded, settings, mail(CLAIRE, OPEN, body="\n"))
    assert outcome == "refused" and reasons == ["missing_details"]
    number = open_case(loaded, settings, body="\n", attachments=[("capture.png", b"\x89PNG....", "image/png")])
    assert case_detail(loaded, number)["attachments"][0]["filename"] == "capture.png"


def test_fields_may_be_given_at_the_top_of_the_body(loaded, settings) -> None:
    body = "Client : C10042\nN° série : SN-7F3A-2291\nCriticité : bloquante\n\nBonjour,\nTout est bloqué."
    number = open_case(loaded, settings, subject="Plus rien ne marche", body=body)
    detail = case_detail(loaded, number)
    assert detail["criticality"] == 1 and detail["title"] == "Plus rien ne marche"
    assert detail["events"][0]["text"].startswith("Bonjour,")


def test_unknown_sender_is_told_how_to_register(loaded, settings) -> None:
    outcome, reasons, _ = deliver(loaded, settings, mail("nobody@unknown.example", OPEN))
    assert outcome == "refused" and reasons[0].startswith("not_a_contact")
    assert sent_to(loaded, "nobody@unknown.example")[0][0] == "refusal"


# -- priority ----------------------------------------------------------------------------

def test_priority_debits_one_point_then_refuses_when_none_left(loaded, settings) -> None:
    first = open_case(loaded, settings, subject=OPEN + " [PRIORITE]")
    second = open_case(loaded, settings, subject=OPEN + " [PRIORITE]")
    assert case_detail(loaded, first)["priority"] is True
    assert case_detail(loaded, second)["priority"] is False
    with session_scope(loaded) as session:
        assert session.scalar(select(Contract.points).where(Contract.client_id == 1)) == 0
        ledger = list(session.scalars(select(PointsEntry).order_by(PointsEntry.id)))
        assert [(e.delta, e.balance) for e in ledger] == [(1, 1), (-1, 0)]
    acks = [" ".join(t.split()) for k, _s, t, _m in sent_to(loaded, CLAIRE) if k == "case_opened"]
    assert "qui ne dispose plus d'aucun point" in acks[0]  # the first took the last point
    assert "ne dispose plus d'aucun point de priorité : le dossier est traité sans priorité" in acks[1]


def test_priority_on_a_standard_contract_opens_without_priority(loaded, settings) -> None:
    outcome, reasons, number = deliver(loaded, settings, mail(
        HELENE, "[CLIENT C20077] [SERIE SN-88C1-5530] [CRITICITE 3] [PRIORITE] Lenteurs"))
    assert outcome == "created" and "priority: not_eligible" in reasons
    assert case_detail(loaded, number)["priority"] is False


# -- licence enforcement ---------------------------------------------------------------------

def test_inactive_licence_is_refused_and_sales_admin_alerted_once_a_day(loaded, settings) -> None:
    subject = "[CLIENT C10042] [SERIE SN-1B22-0042] [CRITICITE 2] Bulletins de paie"
    now = utcnow()
    for minutes in (0, 5):
        outcome, reasons, _ = deliver(loaded, settings, mail(CLAIRE, subject),
                                      now=now + dt.timedelta(minutes=minutes))
        assert outcome == "refused"
    deliver(loaded, settings, mail(PAUL, subject), now=now + dt.timedelta(days=1))
    notices = sent_to(loaded, CLAIRE)
    assert [k for k, *_ in notices] == ["licence_inactive", "licence_inactive"]
    assert settings.sales_admin.address in notices[0][2] and settings.sales_admin.phone in notices[0][2]
    alerts = sent_to(loaded, ADV)
    assert len(alerts) == 2  # day one, day two
    assert alerts[0][3].auto_submitted == "auto-generated"
    for fact in ("C10042", "Boulangeries Lefèvre", "SN-1B22-0042", "Paie RH", CLAIRE):
        assert fact in alerts[0][2]
    with session_scope(loaded) as session:
        assert session.scalar(select(func.count()).select_from(LicenceRefusal)) == 3


def test_inactive_licence_refuses_additions_but_allows_closing(loaded, settings) -> None:
    number = open_case(loaded, settings)
    with session_scope(loaded) as session:
        session.get(Case, number).licence.active = False
    outcome, _, _ = deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] encore", body="Du nouveau."))
    assert outcome == "refused"
    outcome, _, _ = deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] [INFO] où en est-on ?"))
    assert outcome == "refused"
    outcome, _, _ = deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] [CLOTURE] merci"))
    assert outcome == "appended" and case_detail(loaded, number)["status"] == "clos"


# -- follow-ups -------------------------------------------------------------------------------

def test_a_colleague_may_add_information_and_everyone_else_hears(loaded, settings) -> None:
    number = open_case(loaded, settings)
    outcome, _, case = deliver(loaded, settings, mail(PAUL, f"RE: [Dossier #{number}] Factures", body="Même souci ici."))
    assert (outcome, case) == ("appended", number)
    assert [k for k, *_ in sent_to(loaded, CLAIRE)] == ["case_opened", "case_message"]
    assert [k for k, *_ in sent_to(loaded, PAUL)] == []  # not on the list, and the author
    assert sent_to(loaded, MATHILDE)[-1][0] == "case_message"


def test_a_stranger_learns_nothing_about_a_case(loaded, settings) -> None:
    number = open_case(loaded, settings)
    for sender in (HELENE, "nobody@unknown.example"):
        outcome, reasons, case = deliver(loaded, settings, mail(sender, f"[Dossier #{number}] hello"))
        assert outcome == "refused" and case is None and reasons[0] == f"case_not_found: number={number}"
        [(_k, subject, text, message)] = sent_to(loaded, sender)
        assert "Factures impossibles" not in subject + text + message.html
    assert len(case_detail(loaded, number)["events"]) == 1


def test_info_request_is_flagged_to_agents_and_acknowledged(loaded, settings) -> None:
    number = open_case(loaded, settings)
    outcome, _, _ = deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] [INFO] Des nouvelles ?"))
    assert outcome == "appended"
    assert sent_to(loaded, CLAIRE)[-1][0] == "info_ack"
    assert sent_to(loaded, MATHILDE)[-1][0] == "agent_info_request"
    assert case_detail(loaded, number)["events"][-1]["kind"] == "info_request"


def test_reply_to_a_resolved_case_reopens_it(loaded, settings) -> None:
    number = open_case(loaded, settings)
    deliver(loaded, settings, agent_mail(loaded, settings, MATHILDE, number, f"[Dossier #{number}] [RESOLU] corrigé", body="C'est corrigé."))
    assert case_detail(loaded, number)["status"] == "resolu"
    deliver(loaded, settings, mail(CLAIRE, f"RE: [Dossier #{number}] corrigé", body="Toujours en erreur."))
    detail = case_detail(loaded, number)
    assert detail["status"] == "en_cours" and "reopened" in [e["kind"] for e in detail["events"]]


def test_closed_case_reopens_within_the_delay_only(loaded, settings) -> None:
    number = open_case(loaded, settings)
    now = utcnow()
    deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] [CLOTURE] merci"), now=now)
    outcome, _, _ = deliver(loaded, settings, mail(CLAIRE, f"RE: [Dossier #{number}] en fait non", body="Encore."),
                            now=now + dt.timedelta(days=2))
    assert outcome == "appended" and case_detail(loaded, number)["status"] == "nouveau"
    deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] [CLOTURE] merci"), now=now + dt.timedelta(days=3))
    outcome, reasons, _ = deliver(loaded, settings, mail(CLAIRE, f"RE: [Dossier #{number}] re", body="Encore."),
                                  now=now + dt.timedelta(days=11))
    assert outcome == "refused" and reasons[0].startswith("case_closed_too_long")
    assert "nouveau dossier" in sent_to(loaded, CLAIRE)[-1][2]


# -- agents -------------------------------------------------------------------------------------

def test_agent_note_is_never_sent_to_customers(loaded, settings) -> None:
    number = open_case(loaded, settings, cc=[PAUL])
    before = len(sent_to(loaded, CLAIRE)) + len(sent_to(loaded, PAUL))
    outcome, _, _ = deliver(loaded, settings, agent_mail(loaded, settings, MATHILDE, number, f"[Dossier #{number}] [NOTE] client difficile",
                                                   body="Appeler avant 10h."))
    assert outcome == "appended"
    assert len(sent_to(loaded, CLAIRE)) + len(sent_to(loaded, PAUL)) == before
    note = case_detail(loaded, number)["events"][-1]
    assert note["kind"] == "note" and note["internal"] is True


@pytest.mark.parametrize("tag, status", [("[ATTENTE]", "attente_client"), ("[RESOLU]", "resolu"),
                                         ("[CLOS]", "clos"), ("", "en_cours")])
def test_agent_tags_set_the_status(loaded, settings, tag, status) -> None:
    number = open_case(loaded, settings)
    deliver(loaded, settings, agent_mail(loaded, settings, MATHILDE, number, f"{tag} [Dossier #{number}] réponse", body="Voici la réponse."))
    assert case_detail(loaded, number)["status"] == status
    kind, _subject, text, message = sent_to(loaded, CLAIRE)[-1]
    assert kind == "agent_message" and "Voici la réponse." in text
    assert message.to_header == [["Claire Martin", CLAIRE]]


def test_agent_without_case_reference_is_told_how(loaded, settings) -> None:
    outcome, reasons, _ = deliver(loaded, settings, mail(MATHILDE, "Une question"))
    assert outcome == "refused" and reasons == ["agent_needs_case"]


# -- threading -----------------------------------------------------------------------------------

def test_reply_token_finds_the_case_when_the_subject_is_mangled(loaded, settings) -> None:
    number = open_case(loaded, settings)
    with session_scope(loaded) as session:
        tok = session.scalar(select(Delivery.token).where(Delivery.recipient == CLAIRE))
        paul_token = token.make(token.secret(session, settings), number, PAUL)
    reply_address = SupportAddress.parse(SUPPORT).with_token(tok)
    outcome, _, case = deliver(loaded, settings, mail(CLAIRE, "re: ???", body="Voici.", to=reply_address),
                               envelope_to=[reply_address])
    assert (outcome, case) == ("appended", number)
    # A token issued to someone else authorises nothing: the message opens no case either.
    foreign = SupportAddress.parse(SUPPORT).with_token(paul_token)
    outcome, _, case = deliver(loaded, settings, mail(CLAIRE, "re: ???", body="Voici.", to=foreign),
                               envelope_to=[foreign])
    assert outcome == "refused" and case is None


def test_in_reply_to_our_own_mail_finds_the_case(loaded, settings) -> None:
    number = open_case(loaded, settings)
    mid = sent_to(loaded, CLAIRE)[0][3].message_id
    msg = mail(CLAIRE, "Réponse sans tag", body="Complément.")
    msg["In-Reply-To"] = mid
    outcome, _, case = deliver(loaded, settings, msg)
    assert (outcome, case) == ("appended", number)


def test_same_message_twice_opens_one_case_and_one_acknowledgement(loaded, settings) -> None:
    msg = mail(CLAIRE, OPEN)
    assert deliver(loaded, settings, msg)[0] == "created"
    outcome, reasons, _ = deliver(loaded, settings, msg)
    assert outcome == "ignored" and reasons[0].startswith("duplicate of message")
    assert len(sent_to(loaded, CLAIRE)) == 1


# -- safety -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers, envelope_from", [
    ({"Auto-Submitted": "auto-replied"}, None),
    ({"Precedence": "bulk"}, None),
    ({"X-Autoreply": "yes"}, None),
    ({}, ""),
    ({"List-Id": "<users.lists.example>"}, None),
])
def test_automatic_mail_is_never_answered(loaded, settings, headers, envelope_from) -> None:
    outcome, reasons, _ = deliver(loaded, settings, mail(CLAIRE, OPEN, headers=headers), envelope_from=envelope_from)
    assert outcome == "ignored" and reasons[0].startswith("automatic message")
    assert sent_to(loaded, CLAIRE) == []


def test_mailer_daemon_and_loops_are_ignored(loaded, settings) -> None:
    assert deliver(loaded, settings, mail("MAILER-DAEMON@mx.example", "Undelivered"))[0] == "ignored"
    assert deliver(loaded, settings, mail(SUPPORT, OPEN))[0] == "ignored"


def test_bounce_for_our_mail_marks_the_contact_failing(loaded, settings) -> None:
    open_case(loaded, settings, cc=[PAUL])
    ours = sent_to(loaded, PAUL)[0][3].message_id
    report = (
        "From: MAILER-DAEMON@mx.example\r\nTo: assistance@editeur.example\r\nSubject: Undelivered\r\n"
        "Message-ID: <bounce1@mx.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        f"Final-Recipient: rfc822; {PAUL}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {ours}\r\nSubject: x\r\n\r\n--b--\r\n")
    outcome, reasons, _ = deliver(loaded, settings, report.encode(), envelope_from="")
    assert outcome == "ignored" and f"address marked failing: {PAUL}" in reasons
    with session_scope(loaded) as session:
        assert views.status(session)["failing_contacts"] == 1


def test_dmarc_failure_from_our_trusted_mta_makes_the_sender_unknown(loaded, settings) -> None:
    trusting = dataclasses.replace(settings, support=dataclasses.replace(settings.support,
                                                                          trusted_authserv_id="mx.editeur.example"))
    forged = mail(CLAIRE, OPEN, headers={"Authentication-Results": "mx.editeur.example; dmarc=fail header.from=x"})
    assert deliver(loaded, trusting, forged)[0] == "refused"
    # The same header from anyone else is ignored.
    other = mail(CLAIRE, OPEN, headers={"Authentication-Results": "evil.example; dmarc=fail"})
    assert deliver(loaded, trusting, other)[0] == "created"


def test_answers_to_one_sender_are_rate_limited(loaded, settings) -> None:
    limited = dataclasses.replace(settings, support=dataclasses.replace(settings.support, answers_per_hour=3))
    for i in range(5):
        deliver(loaded, limited, mail("nobody@unknown.example", f"spam {i}"))
    assert len(sent_to(loaded, "nobody@unknown.example")) == 3


def test_english_contacts_get_english_answers(loaded, settings) -> None:
    outcome, _, number = deliver(loaded, settings, mail(
        OLIVER, "[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY high] Ledger export fails",
        body="Hi,\n\nThe ledger export stops at 87%.\n"))
    assert outcome == "created"
    [(_kind, subject, text, _)] = sent_to(loaded, OLIVER)
    assert subject == f"[Case #{number}] Ledger export fails"
    assert text.startswith("Hello") and "Bonjour" not in text


def test_a_failing_message_in_a_batch_is_held_alone(loaded, settings, tmp_path) -> None:
    """The fast path of a batch falls back to one message per transaction: only the message
    whose processing raises (here: its refusal template is missing) is held."""
    templates = tmp_path / "templates"
    shutil.copytree(settings.templates_dir, templates)
    for name in ("refusal.txt", "refusal.html"):
        (templates / "fr" / name).unlink()
    broken = dataclasses.replace(settings, templates_dir=str(templates))
    raws = [mail(CLAIRE, OPEN), mail(CLAIRE, "sans rien"), mail(PAUL, OPEN)]
    ids = [intake.store(loaded, m.as_bytes(), "pipe").id for m in raws]
    outcomes = run.process_many(loaded, broken, ids)
    assert [o.outcome for o in outcomes] == ["created", "held", "created"]
    with session_scope(loaded) as session:
        held = session.get(InboundMessage, ids[1])
        assert "TemplateNotFound" in held.reasons[0] and held.error
        assert session.scalar(select(func.count()).select_from(Case)) == 2
    assert len(sent_to(loaded, CLAIRE)) == 1 and len(sent_to(loaded, PAUL)) == 1
