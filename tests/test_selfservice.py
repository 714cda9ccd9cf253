"""Customer self-service by email: follow cases, distribution lists, priority points,
registration and contacts (PRODUCT.md items 6, 7, 8 and 10), through the real pipeline."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import threading

from harness import CLAIRE, HELENE, MATHILDE, PAUL, agent_mail, confirmation_reply, mail
from sqlalchemy import func, select
from test_rules import OPEN, case_detail, deliver, open_case, sent_to

from gateway import intake
from gateway.db import session_scope, utcnow
from gateway.models import CONTACT_ACTIVE, CONTACT_PENDING, Case, Contact, Contract, PointsEntry
from gateway.pipeline import run

NEWCOMER = "julie.noel@boulangeries-lefevre.example"

DMARC_PASS = "mx.editeur.example; dkim=pass header.d=boulangeries-lefevre.example; dmarc=pass header.from=boulangeries-lefevre.example"

def contact_status(engine, email):
    with session_scope(engine) as session:
        return session.scalar(select(Contact.status).where(Contact.email == email))


# -- follow ---------------------------------------------------------------------------------

def test_follow_lists_open_closed_or_all_cases_of_the_senders_client(loaded, settings) -> None:
    first = open_case(loaded, settings, subject=OPEN.replace("Factures impossibles", "Premier souci"))
    second = open_case(loaded, settings, subject=OPEN.replace("Factures impossibles", "Second souci"))
    deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{first}] [CLOTURE] merci"))
    deliver(loaded, settings, mail(HELENE, "[CLIENT C20077] [SERIE SN-88C1-5530] [CRITICITE 3] Secret clinique"))
    for subject, present, absent in (("[SUIVI]", ["Second souci"], ["Premier souci"]),
                                     ("[SUIVI CLOS]", ["Premier souci"], ["Second souci"]),
                                     ("[SUIVI TOUS]", ["Premier souci", "Second souci"], [])):
        outcome, _, _ = deliver(loaded, settings, mail(PAUL, subject))
        assert outcome == "appended"
        kind, _s, text, message = sent_to(loaded, PAUL)[-1]
        assert kind == "follow_list"
        for title in present:
            assert title in text and title in message.html
        for title in absent + ["Secret clinique"]:
            assert title not in text and title not in message.html
    assert f"#{second}" in text


def test_follow_one_case_shows_its_timeline_without_internal_notes(loaded, settings) -> None:
    number = open_case(loaded, settings, attachments=[("journal.log", b"log", "text/plain")])
    deliver(loaded, settings, agent_mail(loaded, settings, MATHILDE, number, f"[Dossier #{number}] [NOTE] client pénible",
                                         body="Ne pas rappeler."))
    deliver(loaded, settings, agent_mail(loaded, settings, MATHILDE, number, f"[Dossier #{number}] réponse",
                                         body="Voici la solution."))
    outcome, _, case = deliver(loaded, settings, mail(PAUL, f"[SUIVI #{number}]"))
    assert (outcome, case) == ("appended", number)
    kind, subject, text, message = sent_to(loaded, PAUL)[-1]
    assert kind == "follow_case" and subject.startswith(f"[Dossier #{number}]")
    assert "Voici la solution." in text and "journal.log" in text
    assert "Ne pas rappeler" not in text + message.html and "pénible" not in text + message.html


def test_follow_never_shows_another_clients_case(loaded, settings) -> None:
    number = open_case(loaded, settings)
    for sender in (HELENE, "nobody@unknown.example"):
        outcome, _, case = deliver(loaded, settings, mail(sender, f"[SUIVI #{number}]"))
        assert outcome == "refused" and case is None
        assert all("Factures impossibles" not in t + m.html for _k, _s, t, m in sent_to(loaded, sender))
    outcome, reasons, _ = deliver(loaded, settings, mail("nobody@unknown.example", "[SUIVI]"))
    assert outcome == "refused" and reasons == ["follow_unknown_sender"]


def test_follow_list_of_a_large_account_is_bounded(loaded, settings) -> None:
    with session_scope(loaded) as session:
        template = session.get(Case, open_case(loaded, settings))
        for i in range(120):
            session.add(Case(client_id=template.client_id, licence_id=template.licence_id, criticality=3,
                             title=f"Dossier numéro {i}", status="en_cours", main_contact_id=template.main_contact_id,
                             thread_id=f"<bulk{i}@x>", opened_at=template.opened_at, updated_at=template.updated_at))
    deliver(loaded, settings, mail(CLAIRE, "[SUIVI]"))
    _kind, _s, text, message = sent_to(loaded, CLAIRE)[-1]
    shown = set(re.findall(r"Dossier numéro \d+", text))
    assert 0 < len(shown) <= 50
    assert "121" in text  # the total is said
    assert len(message.html) < 200_000


# -- distribution list ------------------------------------------------------------------------

def test_distribution_changes_are_checked_recorded_and_confirmed(loaded, settings) -> None:
    number = open_case(loaded, settings)
    outcome, reasons, _ = deliver(loaded, settings, mail(
        CLAIRE, f"[Dossier #{number}] [DIFFUSION +{PAUL}; +{HELENE}, -{CLAIRE} -nobody@x.example]"))
    assert outcome == "appended"
    assert reasons == [f"+{PAUL}: added", f"+{HELENE}: not_a_contact", f"-{CLAIRE}: main_contact",
                       "-nobody@x.example: not_listed"]
    detail = case_detail(loaded, number)
    assert detail["distribution_list"] == [PAUL]
    assert detail["events"][-1]["kind"] == "distribution_change"
    kind, _s, text, _m = sent_to(loaded, CLAIRE)[-1]
    assert kind == "distribution_changed" and HELENE in text
    deliver(loaded, settings, mail(PAUL, f"[Dossier #{number}] [CC -{PAUL}]"))
    assert case_detail(loaded, number)["distribution_list"] == []


def test_distribution_tag_at_opening_adds_contacts(loaded, settings) -> None:
    number = open_case(loaded, settings, subject=OPEN + f" [DIFFUSION +{PAUL}]")
    assert case_detail(loaded, number)["distribution_list"] == [PAUL]


# -- priority points --------------------------------------------------------------------------

def test_priority_on_an_open_case_once_only(loaded, settings) -> None:
    number = open_case(loaded, settings)
    assert deliver(loaded, settings, mail(CLAIRE, f"[Dossier #{number}] [PRIORITE]", body="\n"))[1] == ["priority: granted"]
    assert deliver(loaded, settings, mail(PAUL, f"[Dossier #{number}] [PRIORITY]", body="\n"))[1] == ["priority: already"]
    assert [k for k, *_ in sent_to(loaded, CLAIRE)][-1] == "priority_result"
    with session_scope(loaded) as session:
        assert session.scalar(select(Contract.points).where(Contract.client_id == 1)) == 0


def test_two_priority_requests_at_once_never_go_below_zero(loaded, settings) -> None:
    first, second = open_case(loaded, settings), open_case(loaded, settings)
    ids = [intake.store(loaded, mail(CLAIRE, f"[Dossier #{n}] [PRIORITE]", body="\n").as_bytes(), "pipe").id
           for n in (first, second)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(inbound_id: int) -> None:
        try:
            barrier.wait()
            run.process(loaded, settings, inbound_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with session_scope(loaded) as session:
        assert session.scalar(select(Contract.points).where(Contract.client_id == 1)) == 0
        assert session.scalar(select(func.count()).select_from(PointsEntry).where(PointsEntry.delta < 0)) == 1
        assert session.scalar(select(func.count()).select_from(Case).where(Case.priority.is_(True))) == 1


# -- registration -----------------------------------------------------------------------------

REGISTER = "[INSCRIPTION] [CLIENT C10042] [SERIE SN-7F3A-2291]"


def test_registration_sends_a_code_and_the_reply_activates_the_contact(loaded, settings) -> None:
    outcome, _, _ = deliver(loaded, settings, mail(NEWCOMER, REGISTER, name="Julie Noël"))
    assert outcome == "appended"
    kinds = [k for k, *_ in sent_to(loaded, NEWCOMER)]
    assert kinds == ["registration_received", "registration_code"]
    assert contact_status(loaded, NEWCOMER) == CONTACT_PENDING
    code = re.search(r"\b(\d{6})\b", sent_to(loaded, NEWCOMER)[1][2]).group(1)
    wrong = "000000" if code != "000000" else "111111"
    assert deliver(loaded, settings, mail(NEWCOMER, f"RE: code {wrong}"))[1] == ["registration_bad_code"]
    outcome, _, _ = deliver(loaded, settings, mail(NEWCOMER, "RE: votre code", body=f"Voici le code : {code}"))
    assert outcome == "appended" and contact_status(loaded, NEWCOMER) == CONTACT_ACTIVE
    assert sent_to(loaded, NEWCOMER)[-1][0] == "registration_done"
    assert sent_to(loaded, CLAIRE)[-1][0] == "contact_joined" and sent_to(loaded, PAUL)[-1][0] == "contact_joined"
    # Now a contact: the newcomer opens a case.
    assert deliver(loaded, settings, mail(NEWCOMER, OPEN))[0] == "created"


def test_registration_failures_get_the_same_neutral_answer(loaded, settings) -> None:
    deliver(loaded, settings, mail(NEWCOMER, REGISTER, name="Julie Noël"))
    neutral = sent_to(loaded, NEWCOMER)[0]
    for i, subject in enumerate(["[INSCRIPTION] [CLIENT C10042] [SERIE SN-88C1-5530]",   # another client's
                                 "[INSCRIPTION] [CLIENT C10042] [SERIE SN-1B22-0042]",   # inactive
                                 "[INSCRIPTION] [CLIENT C99999] [SERIE SN-7F3A-2291]"]):  # no such client
        stranger = f"probe{i}@elsewhere.example"
        deliver(loaded, settings, mail(stranger, subject))
        answers = sent_to(loaded, stranger)
        assert [k for k, *_ in answers] == ["registration_received"]
        assert answers[0][1] == neutral[1]
        assert contact_status(loaded, stranger) is None


def test_registration_is_rate_limited_per_sender(loaded, settings) -> None:
    for _ in range(5):
        deliver(loaded, settings, mail("probe@elsewhere.example", "[INSCRIPTION] [CLIENT C1] [SERIE S]"))
    limit = settings.contacts.registrations_per_sender_per_day
    assert len(sent_to(loaded, "probe@elsewhere.example")) == limit


# -- contacts ---------------------------------------------------------------------------------

def test_a_contact_adds_a_colleague_who_is_told(loaded, settings) -> None:
    body = f"Bonjour,\n\nNom : Julie Noël\nEmail : {NEWCOMER}\nTéléphone : 04 72 00 11 33\n"
    outcome, _, _ = deliver(loaded, settings, mail(CLAIRE, "[INTERLOCUTEUR AJOUT]", body=body))
    assert outcome == "held" and contact_status(loaded, NEWCOMER) is None  # until Claire confirms
    outcome, _, _ = deliver(loaded, settings, confirmation_reply(loaded, CLAIRE))
    assert outcome == "appended"
    assert contact_status(loaded, NEWCOMER) == CONTACT_ACTIVE
    assert sent_to(loaded, NEWCOMER)[0][0] == "contact_added"
    assert sent_to(loaded, CLAIRE)[-1][0] == "contact_result"
    outcome, reasons, _ = deliver(loaded, settings, mail(CLAIRE, "[INTERLOCUTEUR AJOUT]", body=body))
    assert outcome == "refused" and reasons[0].startswith("contact_exists")
    # Our trusted MTA's DMARC pass for Claire's domain is proof enough: no confirmation.
    trusting = dataclasses.replace(settings, support=dataclasses.replace(settings.support,
                                                                          trusted_authserv_id="mx.editeur.example"))
    outcome, _, _ = deliver(loaded, trusting, mail(CLAIRE, "[INTERLOCUTEUR MODIF]", body=f"Email : {NEWCOMER}\nTéléphone : 06 00 00 00 00",
                                                   headers={"Authentication-Results": DMARC_PASS}))
    assert outcome == "appended"
    with session_scope(loaded) as session:
        assert session.scalar(select(Contact.phone).where(Contact.email == NEWCOMER)) == "06 00 00 00 00"


def test_contact_commands_validate_and_refuse_clearly(loaded, settings) -> None:
    cases = [(CLAIRE, "[INTERLOCUTEUR AJOUT]", "Nom : Sans Adresse", "contact_missing_email"),
             (CLAIRE, "[INTERLOCUTEUR AJOUT]", "Nom : X\nEmail : pas une adresse", "contact_bad_email"),
             (CLAIRE, "[INTERLOCUTEUR MODIF]", "Email : inconnu@boulangeries-lefevre.example", "contact_unknown"),
             (CLAIRE, "[INTERLOCUTEUR FOO]", "Email : a@b.example", "contact_bad_action"),
             ("nobody@unknown.example", "[INTERLOCUTEUR AJOUT]", f"Email : {NEWCOMER}", "contact_not_allowed")]
    for sender, subject, body, problem in cases:
        outcome, reasons, _ = deliver(loaded, settings, mail(sender, subject, body=body))
        assert outcome == "refused" and reasons[0].startswith(problem), (subject, reasons)
    assert contact_status(loaded, NEWCOMER) is None


def test_removing_a_contact_opens_a_case_for_support(loaded, settings) -> None:
    outcome, _, number = deliver(loaded, settings, mail(CLAIRE, "[INTERLOCUTEUR SUPPRESSION]",
                                                        body=f"Email : {PAUL}\n\nPaul a quitté la société."))
    assert outcome == "created"
    assert case_detail(loaded, number)["main_contact"] == CLAIRE
    assert sent_to(loaded, MATHILDE)[-1][0] == "agent_new_case"
    assert contact_status(loaded, PAUL) == CONTACT_ACTIVE


def test_registration_confirmed_with_the_code_in_the_subject(loaded, settings) -> None:
    deliver(loaded, settings, mail(NEWCOMER, REGISTER, name="Julie Noël"))
    code = re.search(r"\b(\d{6})\b", sent_to(loaded, NEWCOMER)[1][2]).group(1)
    outcome, _, _ = deliver(loaded, settings, mail(NEWCOMER, f"[INSCRIPTION {code}]"))
    assert outcome == "appended" and contact_status(loaded, NEWCOMER) == CONTACT_ACTIVE


def test_a_registration_code_expires(loaded, settings) -> None:
    now = utcnow()
    deliver(loaded, settings, mail(NEWCOMER, REGISTER, name="Julie Noël"), now=now)
    code = re.search(r"\b(\d{6})\b", sent_to(loaded, NEWCOMER)[1][2]).group(1)
    late = now + dt.timedelta(hours=settings.contacts.registration_code_hours, minutes=1)
    outcome, _, _ = deliver(loaded, settings, mail(NEWCOMER, f"[INSCRIPTION {code}]"), now=late)
    assert contact_status(loaded, NEWCOMER) == CONTACT_PENDING
    assert outcome == "refused"
