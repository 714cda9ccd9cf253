"""What the old portal's forms did, by email, over real sockets: naming a case's main contact
(opening for a colleague, handing a case over), changing a case's criticality and module, and
priority that support sees first. Each test reads what every recipient receives (text and
HTML parts, French and English)."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from click.testing import CliRunner
from harness import (
    CLAIRE,
    GREGOIRE,
    HELENE,
    MATHILDE,
    OLIVER,
    PAUL,
    Received,
    agent_mail,
    confirmation_reply,
    mail,
    send,
)
from sqlalchemy import func, select

from gateway import views
from gateway.cli import main as cli
from gateway.db import session_scope, utcnow
from gateway.models import CONTACT_PENDING, Case, Client, Contact, Disposition, InboundMessage, OutboundMessage
from gateway.outbound import send as send_out

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE basse] Lettrage automatique bloqué"
LEAD = "responsable.support@editeur.example"
EMMA = "emma.stone@northwind.example"
JULIE = "julie.noel@boulangeries-lefevre.example"


def case_of(engine, number):
    with session_scope(engine) as session:
        return views.case_detail(session, number)


def newest(relay, rcpt: str, contains: str = "", timeout: float = 20) -> Received:
    """The newest mail `rcpt` received whose text holds `contains` (waiting for it)."""
    relay.wait_for(lambda got: any(r.rcpt == rcpt and contains in r.text() for r in got), timeout)
    return [r for r in relay.to(rcpt) if contains in r.text()][-1]


def flat(text: str) -> str:
    """`text` on one line, each run of blanks and line ends one space."""
    return " ".join(text.split())


def both(received: Received) -> str:
    """Text and HTML part, for checks that must hold in each."""
    return received.text() + "\n" + received.html()


def settled(engine, count: int, timeout: float = 30) -> None:
    """Wait until `count` received messages have their outcome."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(engine) as session:
            if session.scalar(select(func.count()).where(InboundMessage.outcome != Disposition.PENDING)) >= count:
                return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} messages processed")


def open_case(gateway, relay, subject: str = OPEN, body: str = "Bonjour,\n\nLe lettrage ne se fait plus.\n",
              sender: str = CLAIRE, **kw) -> int:
    send(gateway.settings, mail(sender, subject, body, **kw))
    ack = newest(relay, MATHILDE, "Nouveau dossier")
    number = int(ack.subject.split("#")[1].split("]")[0])
    relay.clear()
    return number


def add_contact(engine, client: str, email: str, name: str, status: str = "active", language: str | None = None):
    with session_scope(engine) as session:
        client_id = session.scalar(select(Client.id).where(Client.code == client))
        session.add(Contact(client_id=client_id, email=email, name=name, status=status, language=language))


def backdate(engine, number: int, hours: int) -> None:
    """Case `number` as if opened `hours` earlier."""
    with session_scope(engine) as session:
        case = session.get(Case, number)
        case.opened_at -= dt.timedelta(hours=hours)


def jobs(tmp_path: Path, settings, name: str, now: dt.datetime) -> str:
    """`gateway jobs run NAME --now ...` on the test's database; what it printed."""
    config = tmp_path / "jobs.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n[support]\naddress = "{settings.support.address}"\n'
                      f'lead_address = "{LEAD}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "jobs", "run", name, "--now", now.isoformat()])
    assert result.exit_code == 0, result.output
    return result.output


# -- naming the main contact ---------------------------------------------------------------------

def test_claire_opens_a_case_for_paul_who_becomes_its_main_contact(gateway, relay, engine) -> None:
    send(gateway.settings, mail(CLAIRE, OPEN, f"Interlocuteur : {PAUL}\n\nBonjour,\n\nLe lettrage ne se fait plus.\n"))
    ack = newest(relay, PAUL, "Lettrage")
    # The acknowledgement: Paul in To, Claire in Cc, both read who opened it for whom.
    assert ack.subject == "[Dossier #1] Lettrage automatique bloqué"
    assert ack.message["To"].addresses[0].addr_spec == PAUL
    assert [a.addr_spec for a in ack.message["Cc"].addresses] == [CLAIRE]
    assert f"{CLAIRE}> a ouvert le dossier n° 1 pour Paul Girard" in flat(ack.text())
    assert "a ouvert ce dossier pour" in ack.html() and "contact principal" in ack.html()
    # Claire is in copy because she opened it: nobody "added" her, and the text is hers, not Paul's.
    for part in (ack.text(), ack.html()):
        assert "les a ajoutées" not in part and "Votre description" not in part and "Description" in part
    assert newest(relay, CLAIRE, "Lettrage").text() == ack.text()
    notice = newest(relay, MATHILDE, "Nouveau dossier")
    assert "Contact principal : Paul Girard" in notice.text() and "Claire Martin" in notice.text()
    case = case_of(engine, 1)
    assert case["main_contact"] == PAUL and case["distribution_list"] == [CLAIRE]
    assert case["events"][0]["text"] == "Bonjour,\n\nLe lettrage ne se fait plus."  # the line was used
    # By name too, with the field's other spellings.
    relay.clear()
    send(gateway.settings, mail(CLAIRE, OPEN, "Contact principal : paul girard\n\nEncore.\n"))
    newest(relay, PAUL, "Encore")
    assert case_of(engine, 2)["main_contact"] == PAUL


def test_a_colleague_of_another_company_or_a_pending_one_is_refused_with_the_list_of_who_can_be(
        gateway, relay, engine) -> None:
    add_contact(engine, "C10042", JULIE, "Julie Noël", status=CONTACT_PENDING)
    for named, words in ((HELENE, "n'est ni l'adresse ni le nom"), (JULIE, "n'est pas active"),
                         ("Personne Inconnue", "n'est ni l'adresse ni le nom")):
        relay.clear()
        send(gateway.settings, mail(CLAIRE, OPEN, f"Interlocuteur : {named}\n\nLe lettrage ne se fait plus.\n"))
        refusal = newest(relay, CLAIRE, words)
        assert refusal.subject.startswith("Votre demande n'a pas pu être traitée")
        # One thing said per sentence: who cannot be named, then why nothing was opened.
        assert ("Seul un interlocuteur actif" in flat(refusal.text())
                and "d'un dossier ; le dossier n'a donc pas été ouvert." in flat(refusal.text()))
        for part in (refusal.text(), refusal.html()):
            assert CLAIRE in part and PAUL in part and "C10042" in part
            assert "helene.dupre" not in part.replace(named, "") and OLIVER not in part
            assert "julie.noel" not in part.replace(named, "")  # pending: not someone who can be named
    with session_scope(engine) as session:
        assert session.scalar(select(Case.id)) is None
    assert relay.to(HELENE) == [] and relay.to(PAUL) == []


def test_the_main_contact_hands_the_case_over_and_both_are_told(gateway, relay, engine) -> None:
    number = open_case(gateway, relay, cc=[PAUL])
    send(gateway.settings, mail(CLAIRE, f"[Dossier #{number}] [INTERLOCUTEUR {PAUL}] je pars en congés", "\n"))
    told = newest(relay, PAUL, "nouveau contact principal")
    assert told.message["To"].addresses[0].addr_spec == PAUL
    assert [a.addr_spec for a in told.message["Cc"].addresses] == [CLAIRE]
    assert "nouveau contact principal" in told.html() and "Claire Martin" in told.html()
    assert "Précédent         : Claire Martin" in told.text()
    newest(relay, CLAIRE, "nouveau contact principal")
    case = case_of(engine, number)
    assert case["main_contact"] == PAUL and case["distribution_list"] == [CLAIRE]
    assert case["events"][-1]["kind"] == "main_contact_change"
    # The answers now go to Paul; Claire, no longer the main contact, cannot hand it over.
    relay.clear()
    send(gateway.settings, mail(CLAIRE, f"[Dossier #{number}] [INTERLOCUTEUR {CLAIRE}]", "\n"))
    refusal = newest(relay, CLAIRE, "Seul le contact principal")
    for part in (refusal.text(), refusal.html()):
        assert "Paul Girard" in part and CLAIRE in part
    assert case_of(engine, number)["main_contact"] == PAUL
    # [SUIVI #N] shows the handover in words.
    send(gateway.settings, mail(PAUL, f"[SUIVI #{number}]"))
    follow = newest(relay, PAUL, "changement de contact principal")
    assert f"{CLAIRE} → {PAUL}" in follow.text()


def test_the_lines_a_handover_or_a_change_used_are_not_left_in_the_message(gateway, relay, engine) -> None:
    number = open_case(gateway, relay)
    send(gateway.settings, mail(CLAIRE, f"[Dossier #{number}]", f"Interlocuteur : {PAUL}\n\nJe pars en congés.\n"))
    told = newest(relay, MATHILDE, "Je pars en congés.")
    assert case_of(engine, number)["main_contact"] == PAUL
    for part in (told.text(), told.html(), case_of(engine, number)["events"][-1]["text"]):
        assert "Je pars en congés." in part and "Interlocuteur" not in part
    relay.clear()
    send(gateway.settings, mail(PAUL, f"[Dossier #{number}]", "Criticité : bloquante\nModule : Ventes\n\nTout est arrêté.\n"))
    told = newest(relay, CLAIRE, "Tout est arrêté.")
    assert case_of(engine, number)["criticality"] == 1
    for part in (told.text(), told.html(), case_of(engine, number)["events"][-1]["text"]):
        assert "Tout est arrêté." in part and "Criticité :" not in part and "Module :" not in part


def test_a_handover_with_a_change_and_priority_does_all_three(gateway, relay, engine) -> None:
    number = open_case(gateway, relay)
    send(gateway.settings, mail(CLAIRE, f"[Dossier #{number}] [INTERLOCUTEUR {PAUL}] [CRITICITE 1] [PRIORITE]",
                                "Paul prend la suite, c'est bloquant.\n"))
    newest(relay, CLAIRE, "priorit")
    told = newest(relay, PAUL, "Paul prend la suite")
    assert "Interlocuteur" not in told.text()
    case = case_of(engine, number)
    assert (case["main_contact"], case["criticality"], case["priority"]) == (PAUL, 1, True)
    assert [e["kind"] for e in case["events"]][1:] == [
        "main_contact_change", "criticality_change", "priority", "customer_message"]


def test_a_case_on_an_inactive_licence_is_not_handed_over(gateway, relay, engine) -> None:
    number = open_case(gateway, relay)
    with session_scope(engine) as session:
        session.get(Case, number).licence.active = False
    send(gateway.settings, mail(CLAIRE, f"[Dossier #{number}] [INTERLOCUTEUR {PAUL}]", "Une précision.\n"))
    notice = newest(relay, CLAIRE, gateway.settings.sales_admin.phone)
    assert gateway.settings.sales_admin.address in notice.text()
    case = case_of(engine, number)
    assert case["main_contact"] == CLAIRE and [e["kind"] for e in case["events"]] == ["opened"]
    assert relay.to(PAUL) == []


def test_an_agent_hands_a_case_over_with_proof_and_is_asked_to_confirm_without(gateway, relay, engine) -> None:
    settings = gateway.settings
    number = open_case(gateway, relay)
    send(settings, agent_mail(engine, settings, MATHILDE, number, f"[Dossier #{number}] [INTERLOCUTEUR {PAUL}]",
                              body="\n"))
    told = newest(relay, PAUL, "nouveau contact principal")
    assert "Mathilde Roche" in both(told)
    assert newest(relay, MATHILDE, "nouveau contact principal")  # the agent's confirmation
    assert case_of(engine, number)["main_contact"] == PAUL
    # Without its token, an agent's handover waits for the agent's confirmation.
    relay.clear()
    send(settings, mail(MATHILDE, f"[Dossier #{number}] relais", "Interlocuteur : claire martin\n"))
    newest(relay, MATHILDE, "confirm")
    assert case_of(engine, number)["main_contact"] == PAUL and relay.to(CLAIRE) == []
    send(settings, confirmation_reply(engine, MATHILDE))
    newest(relay, CLAIRE, "nouveau contact principal")
    assert case_of(engine, number)["main_contact"] == CLAIRE


def test_english_customers_name_a_main_contact_in_english(gateway, relay, engine) -> None:
    add_contact(engine, "C30105", EMMA, "Emma Stone", language="en")
    send(gateway.settings, mail(OLIVER, "[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY high] Ledger export fails",
                                f"Main contact: {EMMA}\n\nThe export stops.\n"))
    ack = newest(relay, EMMA)
    assert "opened case #1 for Emma Stone" in flat(ack.text())
    assert "named its <strong>main contact</strong>" in ack.html()
    relay.clear()
    send(gateway.settings, mail(EMMA, f"[Case #1] [CONTACT {HELENE}]", "\n"))
    refusal = newest(relay, EMMA, "is neither the address nor the name")
    for part in (refusal.text(), refusal.html()):
        assert "Active contacts of customer C30105" in part and OLIVER in part and EMMA in part
        assert "clinique" not in part.replace(HELENE, "") and CLAIRE not in part
        # English tags in an English mail: the case is [Case #1], never the French word.
        assert "[Case #1]" in part and "Dossier" not in part
    send(gateway.settings, mail(EMMA, f"[Case #1] [CONTACT {OLIVER}]", "\n"))
    told = newest(relay, OLIVER, "has a new main contact")
    assert "Previously        : Emma Stone" in told.text() and "new main contact" in told.html()


# -- changing a case ------------------------------------------------------------------------------

def test_criticality_and_module_change_is_confirmed_announced_and_escalated_from_the_change(
        gateway, relay, engine, tmp_path) -> None:
    settings = gateway.settings
    number = open_case(gateway, relay)  # criticality 4: 72 hours
    backdate(engine, number, hours=70)  # the case has waited 70 hours already
    send(settings, mail(CLAIRE, f"[Dossier #{number}] [CRITICITE 1] [MODULE achats]", "\n"))
    confirmed = newest(relay, CLAIRE, "modifié")
    assert "Criticité : 4 – basse → 1 – bloquante" in confirmed.text()
    assert "Module    : non précisé → Achats" in confirmed.text()
    assert "4 – basse → 1 – bloquante" in confirmed.html() and "Achats" in confirmed.html()
    announced = newest(relay, GREGOIRE, "modifié")
    assert f"Modification demandée par Claire Martin <{CLAIRE}>" in flat(announced.text())
    assert "délai de première réponse compté depuis ce changement" in flat(announced.text())
    # Each change on its own line, under the sentence that says who asked.
    lines = announced.text().splitlines()
    assert "  Criticité : 4 – basse → 1 – bloquante (délai de première réponse compté depuis ce changement)" in lines
    assert "  Module    : non précisé → Achats" in lines
    assert "Le lettrage ne se fait plus." in announced.text() and "bloquante" in announced.html()
    case = case_of(engine, number)
    assert (case["criticality"], case["module"]) == (1, "Achats")
    assert [e["kind"] for e in case["events"]][-2:] == ["criticality_change", "module_change"]
    # A bad value is refused as at opening; the same value changes nothing.
    relay.clear()
    send(settings, mail(CLAIRE, f"[Dossier #{number}] [MODULE Paie]", "\n"))
    assert "Achats" in newest(relay, CLAIRE, "ne fait pas partie de cette licence").text()
    # Escalation counts 2 hours from the change, not 72 from the opening (70 hours ago).
    now = utcnow()
    assert "nothing due" in jobs(tmp_path, settings, "escalation", now + dt.timedelta(hours=1, minutes=55))
    assert "escalation: 1" in jobs(tmp_path, settings, "escalation", now + dt.timedelta(hours=2, minutes=5))
    escalation = newest(relay, LEAD, "aucune réponse")
    assert "compté depuis le changement de criticité" in flat(escalation.text())
    assert "(2 h" in escalation.text() and "changement de criticité" in escalation.html()


def test_an_english_customer_raises_criticality_in_english(gateway, relay, engine) -> None:
    open_case(gateway, relay, "[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY low] Ledger slow",
              "It is slow.\n", sender=OLIVER)
    send(gateway.settings, mail(OLIVER, "[Case #1] [SEVERITY critical]", "\n"))
    confirmed = newest(relay, OLIVER, "changed as you asked")
    assert "Severity    : 4 – low → 1 – blocking" in confirmed.text()  # the word of the [SEVERITY] tag
    assert "riticality" not in confirmed.text() + confirmed.html()
    assert "4 – low → 1 – blocking" in confirmed.html() and "first-response delay" in confirmed.html()
    assert confirmed.subject == "[Case #1] Ledger slow"
    for part in (confirmed.text(), confirmed.html()):
        assert "[Case #1]" in part and "Dossier" not in part
    send(gateway.settings, mail(OLIVER, "[Case #1] [MODULE Banking]", "\n"))
    refused = newest(relay, OLIVER, "has no modules")
    assert "Banking" in refused.text() and "Banking" in refused.html()


# -- priority -------------------------------------------------------------------------------------

def test_priority_on_an_existing_case_is_announced_has_its_delay_and_comes_first(
        gateway, relay, engine, tmp_path) -> None:
    settings = gateway.settings
    plain = open_case(gateway, relay, OPEN.replace("basse", "normale"))         # 24 hours
    urgent = open_case(gateway, relay, OPEN.replace("bloqué", "à nouveau"))    # 72 hours
    send(settings, mail(PAUL, f"[Dossier #{urgent}] [PRIORITE]", "\n"))
    announced = newest(relay, MATHILDE, "passé en priorité")
    assert announced.subject == f"[Dossier #{urgent}] Lettrage automatique à nouveau"
    assert f"Priorité prise par Paul Girard <{PAUL}>" in announced.text()
    assert "des dossiers prioritaires : 4 h)" in flat(announced.text()) and "passé en priorité" in announced.html()
    assert "Le lettrage ne se fait plus." in announced.text()
    # 4 hours for a priority case; the other one waits its 24 hours.
    now = utcnow()
    assert "nothing due" in jobs(tmp_path, settings, "escalation", now + dt.timedelta(hours=3, minutes=55))
    backdate(engine, plain, hours=21)  # both now due: the priority one goes first
    assert "escalation: 2" in jobs(tmp_path, settings, "escalation", now + dt.timedelta(hours=4, minutes=5))
    relay.wait_for(lambda got: len([r for r in got if r.rcpt == LEAD]) >= 2)
    first, second = [r for r in relay.to(LEAD)][:2]
    with session_scope(engine) as session:
        order = list(session.scalars(select(OutboundMessage.case_id).where(OutboundMessage.kind == "escalation")
                                     .order_by(OutboundMessage.id)))
    assert order == [urgent, plain]
    priority_mail = next(r for r in (first, second) if f"#{urgent}]" in r.subject)
    assert "pour un dossier prioritaire (4 h)" in flat(priority_mail.text())
    assert "Priorité          : oui" in priority_mail.text()


def test_held_back_notices_about_a_priority_case_come_first_in_the_digest(gateway, relay, engine) -> None:
    settings = gateway.settings
    plain = open_case(gateway, relay)
    urgent = open_case(gateway, relay, OPEN.replace("bloqué", "urgent") + " [PRIORITE]")
    # Paul writes on both cases until the agents' share of notices is used up.
    for i in range(settings.support.notices_per_window + 2):
        for number in (plain, urgent):
            send(settings, mail(PAUL, f"[Dossier #{number}] précision {i}", f"Précision {i} sur {number}."))
    settled(engine, 2 + 2 * (settings.support.notices_per_window + 2))
    relay.clear()
    # Once the window has ended, the held notices go out in one digest per recipient.
    send_out.drain(engine, settings, now=utcnow() + dt.timedelta(minutes=settings.support.notice_window_minutes + 1))
    merged = newest(relay, GREGOIRE, "regroupé")
    text = merged.text()
    firsts = [text.index(f"[Dossier #{n}]", text.index("=====")) for n in (urgent, plain)]
    assert firsts[0] < firsts[1], "the priority case's notices come first"
    html = merged.html()
    assert html.index("Précision") <= html.index(f"sur {urgent}") < html.index(f"sur {plain}")


def test_a_repeated_value_is_a_message_and_an_agent_changes_a_case_too(gateway, relay, engine) -> None:
    settings = gateway.settings
    number = open_case(gateway, relay)
    # The opening subject's tags again, with words: the words are added, nothing changes.
    send(settings, mail(CLAIRE, f"[Dossier #{number}] {OPEN}", "Autre précision."))
    assert "Autre précision." in newest(relay, MATHILDE, "Autre précision.").text()
    assert [e["kind"] for e in case_of(engine, number)["events"]] == ["opened", "customer_message"]
    relay.clear()
    send(settings, agent_mail(engine, settings, MATHILDE, number, f"[Dossier #{number}] [CRITICITE haute]",
                              body="\n"))
    announced = newest(relay, GREGOIRE, "modifié")
    assert "Criticité : 4 – basse → 2 – haute" in announced.text() and "Mathilde Roche" in announced.html()
    assert newest(relay, MATHILDE, "modifié")  # the agent's own copy
    assert case_of(engine, number)["criticality"] == 2 and relay.to(CLAIRE) == []


def test_a_reply_to_the_opening_mail_that_named_the_main_contact_is_just_a_message(gateway, relay, engine) -> None:
    opening = mail(CLAIRE, f"[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE basse] [INTERLOCUTEUR {PAUL}] Lettrage",
                   "Le lettrage ne se fait plus.\n")
    send(gateway.settings, opening)
    newest(relay, MATHILDE, "Nouveau dossier")
    relay.clear()
    # Claire answers her own first mail (her client keeps its subject and threads it).
    again = mail(CLAIRE, f"RE: {opening['Subject']}", "Autre précision : cela arrive sur le poste 3.\n")
    again["In-Reply-To"] = again["References"] = opening["Message-ID"]
    send(gateway.settings, again)
    told = newest(relay, PAUL, "Autre précision")
    assert "poste 3" in told.text() and "poste 3" in told.html()
    case = case_of(engine, 1)
    assert case["main_contact"] == PAUL and [e["kind"] for e in case["events"]] == ["opened", "customer_message"]
    assert all("ne peut" not in r.text() and "Seul le contact principal" not in r.text() for r in relay.to(CLAIRE))


def test_which_lines_and_tags_name_a_main_contact() -> None:
    from gateway.pipeline.grammar import parse_request
    named = {
        ("[INTERLOCUTEUR paul@x.fr] Titre", ""): "paul@x.fr",
        ("[CONTACT Paul Girard <paul@x.fr>] Titre", ""): "Paul Girard <paul@x.fr>",
        ("Titre", "Interlocuteur : Paul Girard\n\nTexte"): "Paul Girard",
        ("Titre", "Contact principal : paul@x.fr\n\nTexte"): "paul@x.fr",
        ("Titre", "Main contact: Emma Stone\n\nText"): "Emma Stone",
        ("Titre", "Contact : paul@x.fr\n\nTexte"): "paul@x.fr",
    }
    for (subject, body), value in named.items():
        request = parse_request(subject, body)
        assert request.fields.get("main_contact") == value, (subject, body)
        assert "contact" not in request.flags
    # The commands keep their meaning; a `Contact :` line without an address is text.
    assert parse_request("[INTERLOCUTEUR AJOUT]", "Email : a@x.fr").command_values == {"contact": "AJOUT"}
    request = parse_request("[Dossier #3] précision", "Contact : 04 72 00 11 22\n\nMerci")
    assert "main_contact" not in request.fields and request.body(("main_contact",)).startswith("Contact : 04")


# -- the templates, from plain objects ------------------------------------------------------------

def test_the_new_mails_render_in_both_languages_and_escape_what_people_wrote() -> None:
    from types import SimpleNamespace as NS

    from test_templates import SETTINGS, TEMPLATES, XSS, XSS_ESCAPED, assert_well_rendered, base_context, make_case

    from gateway.outbound import compose
    settings = NS(**vars(SETTINGS), sla=NS(priority_first_response_hours=4))
    case = make_case(title="Grand livre" + XSS)
    former = NS(name="Paul Martin" + XSS, email="paul.martin@durand.example")
    author = NS(name="Marie Durand" + XSS, address="marie.durand@durand.example")
    changes = [NS(field="criticality", before=3, after=1), NS(field="module", before=None, after="Banque")]
    candidates = [NS(name="Marie Durand" + XSS, email="marie.durand@durand.example")]
    refused = {"named": "x@y.example" + XSS, "client": case.client, "candidates": candidates, "problems": [],
               "request": NS(title="t", fields={}), "original_subject": "Urgent" + XSS, "sender": author}
    contexts = {
        "main_contact_changed": [{"former": former, "author": author}],
        "main_contact_refused": [dict(refused, reason=reason) for reason in ("unknown", "not_active")]
                                + [dict(refused, reason=reason, on_case=True)
                                   for reason in ("not_allowed", "closed", "already")],
        "case_changed": [{"changes": changes, "author": author, "details": ""}],
        "agent_case_changed": [{"changes": changes, "author": author, "details": "Bonjour" + XSS},
                               {"changes": [NS(field="priority", before=False, after=True)], "author": author,
                                "details": ""}],
    }
    for kind, variants in contexts.items():
        for variant in variants:
            on_case = variant.pop("on_case", kind != "main_contact_refused")
            ctx = {**base_context(case if on_case else None), **variant, "settings": settings}
            for lang in ("fr", "en"):
                rendered = compose.render(TEMPLATES, kind, lang, ctx)
                assert_well_rendered(rendered, ctx)
                assert XSS not in rendered.html and XSS_ESCAPED in rendered.html, (kind, lang)
