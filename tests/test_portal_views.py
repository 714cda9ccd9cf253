"""What the portal let customers see, by email (issue 9, items 6, 7 and 8), over real sockets:
richer [SUIVI] rows, refusals that lead with what was wrong and show the sender's own
code and serial, notices to people added to or removed from a case, and English tags for
English customers. Each test reads the mail the customer receives: its subject decoded
strictly (the `relay` fixture checks every header), its text and its HTML part."""
from __future__ import annotations

import html
import re

from harness import CLAIRE, HELENE, MATHILDE, OLIVER, PAUL, Received, mail, reply_to, send

from gateway import views
from gateway.db import session_scope

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] [MODULE Ventes] Factures impossibles"
STRANGER = "nobody@unknown.example"


def words(text: str) -> str:
    """The text as one line of words (the text part is wrapped; HTML has tags and entities)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def shows(part: str, label: str, value: str) -> bool:
    """Whether `part` shows `label` with `value`: "Statut : nouveau" in the text, two cells in HTML."""
    return re.search(rf"{re.escape(label)}\s*:?\s*{re.escape(value)}", words(part)) is not None


def paragraphs(received: Received) -> list[str]:
    """The text part's paragraphs, as the reader sees them."""
    return received.text().replace("\r\n", "\n").split("\n\n")


def newest(relay, rcpt: str, count: int = 1) -> Received:
    """The newest of the first `count` mails to `rcpt`, once it has come."""
    relay.wait_for(lambda got: sum(r.rcpt == rcpt for r in got) >= count)
    return relay.to(rcpt)[count - 1]


def case_of(engine, number: int) -> dict:
    with session_scope(engine) as session:
        detail = views.case_detail(session, number)
    assert detail is not None
    return detail


def outcomes(engine) -> list[tuple[str, int | None]]:
    with session_scope(engine) as session:
        return [(m["outcome"], m["case"]) for m in views.inbound_list(session)]


# -- 6. richer views -----------------------------------------------------------------------

def test_follow_rows_show_product_module_and_main_contact(gateway, relay, engine) -> None:
    settings = gateway.settings
    send(settings, mail(CLAIRE, OPEN, cc=[PAUL], name="Claire Martin"))
    ack = newest(relay, CLAIRE)
    for part in (ack.text(), ack.html()):
        assert shows(part, "Statut", "nouveau")  # the acknowledgement states the status
    copy = words(newest(relay, PAUL).text())
    assert "Les personnes de cette liste reçoivent ce message en copie" in copy

    send(settings, mail(PAUL, "[SUIVI]"))
    listing = newest(relay, PAUL, 2)
    assert listing.subject == "Vos dossiers ouverts"
    lines = listing.text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("  #1 "))
    facts = "Gestion Commerciale 100 · module Ventes · contact principal : Claire Martin"
    assert "Factures impossibles" in lines[row] and words(lines[row + 1]) == facts  # the line below the case's
    assert facts in words(listing.html())

    send(settings, mail(PAUL, "[SUIVI #1]"))
    detail = newest(relay, PAUL, 3)
    assert detail.subject == "[Dossier #1] Factures impossibles"
    for part in (detail.text(), detail.html()):
        assert shows(part, "Produit", "Gestion Commerciale 100")


def test_a_refusal_leads_with_the_problem_and_shows_the_senders_own_code(gateway, relay, engine) -> None:
    send(gateway.settings, mail(HELENE, "[SERIE SN-88C1-5530] [CRITICITE 2] Écran figé"))
    refusal = newest(relay, HELENE)
    assert refusal.subject == "Votre demande n'a pas pu être traitée : [SERIE SN-88C1-5530] [CRITICITE 2] Écran figé"
    first = paragraphs(refusal)
    assert first[0] == "Bonjour,"
    assert words(first[1]).startswith("Le code client est absent")  # the one thing wrong, first
    text, page = words(refusal.text()), words(refusal.html())
    for part in (text, page):
        assert "[CLIENT C20077] [SERIE SN-88C1-5530] [CRITICITE haute]" in part
        assert part.index("Le code client est absent") < part.index("Rappel des balises")
        assert "C10042" not in part and "SN-7F3A-2291" not in part  # never another client's
    assert page.index("Bonjour,") < page.index("Le code client est absent") < page.index("n'a donc pas été traité")
    assert outcomes(engine) == [("refused", None)]


def test_a_stranger_is_shown_a_made_up_example_never_a_real_code(gateway, relay, engine) -> None:
    send(gateway.settings, mail(STRANGER, "[CLIENT C55555] [SERIE SN-1234] [CRITICITE 2] Bonjour"))
    refusal = newest(relay, STRANGER)
    assert words(paragraphs(refusal)[1]).startswith(
        "Votre adresse e-mail ne fait pas partie des interlocuteurs actifs du client C55555")
    # The neutral answer to a registration shows a made-up example too.
    send(gateway.settings, mail(STRANGER, "[INSCRIPTION] [CLIENT C55555] [SERIE SN-1234]"))
    neutral = newest(relay, STRANGER, 2)
    for part in (refusal.text(), refusal.html(), neutral.text(), neutral.html()):
        assert "[CLIENT C00000] [SERIE SN-0000-0000]" in words(part)
        for real in ("C10042", "C20077", "C30105", "SN-7F3A-2291", "SN-88C1-5530", "Boulangeries"):
            assert real not in part


# -- 7. people told when a case concerns them -------------------------------------------------

def test_people_added_or_removed_are_told(gateway, relay, engine) -> None:
    settings = gateway.settings
    send(settings, mail(CLAIRE, OPEN, name="Claire Martin"))
    newest(relay, CLAIRE)
    send(settings, mail(CLAIRE, f"[Dossier #1] [DIFFUSION +{PAUL}]"))
    added = newest(relay, PAUL)
    assert added.subject == "[Dossier #1] Factures impossibles"
    assert [a.addr_spec for a in added.message["To"].addresses] == [PAUL]
    for part in (added.text(), added.html()):
        assert "Claire Martin" in words(part)
        assert "vous a ajouté(e) à la liste de diffusion du dossier n° 1" in words(part)
        for label, value in (("Titre", "Factures impossibles"), ("Produit", "Gestion Commerciale 100"),
                             ("Module", "Ventes"), ("Statut", "nouveau")):
            assert shows(part, label, value), label
        assert "répondez simplement à ce message" in words(part)

    # Paul answers the notice as it says: his words reach the case.
    send(settings, reply_to(added, PAUL, "Je confirme, même erreur chez moi."))
    relay.wait_for(lambda got: any(r.rcpt == CLAIRE and "même erreur" in r.text() for r in got))
    assert case_of(engine, 1)["events"][-1]["text"] == "Je confirme, même erreur chez moi."

    send(settings, mail(CLAIRE, f"[Dossier #1] [DIFFUSION -{PAUL}]"))
    removed = newest(relay, PAUL, 2)
    assert removed.subject == "[Dossier #1] Factures impossibles"
    for part in (words(removed.text()), words(removed.html())):
        assert "vous a retiré(e) de la liste de diffusion du dossier n° 1" in part
        assert "vous ne recevrez plus les échanges sur ce dossier" in part
    assert case_of(engine, 1)["distribution_list"] == []

    # From now on Paul is not copied.
    relay.clear()
    send(settings, mail(CLAIRE, "[Dossier #1] Toujours bloqué", "Toujours bloqué ce matin."))
    relay.wait_for(lambda got: any(r.rcpt == MATHILDE for r in got))
    assert relay.to(PAUL) == []


# -- 8. English customers ---------------------------------------------------------------------

def test_an_english_customer_sees_english_tags_and_their_replies_find_the_case(gateway, relay, engine) -> None:
    settings = gateway.settings
    send(settings, mail(OLIVER, "[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY high] Ledger export fails",
                        "Hi,\n\nThe ledger export stops at 87%.\n"))
    ack = newest(relay, OLIVER)
    assert ack.subject == "[Case #1] Ledger export fails"
    for part in (ack.text(), ack.html()):
        assert "[Case #1]" in words(part) and "[CLOSE]" in words(part) and shows(part, "Status", "new")
        assert "Dossier" not in part and "CLOTURE" not in part

    # A reply from his mail client (threaded, through its Reply-To) finds the case...
    send(settings, reply_to(ack, OLIVER, "Here is the log you will need."))
    # ... and so does a new mail with only the English tag in its subject.
    send(settings, mail(OLIVER, "Re: [Case #1] Ledger export fails", "It also fails on the March ledger."))
    relay.wait_for(lambda got: sum(r.rcpt == MATHILDE for r in got) >= 3)
    assert [o for o in outcomes(engine)] == [("created", 1), ("appended", 1), ("appended", 1)]
    agents_copy = relay.to(MATHILDE)[-1]
    assert agents_copy.subject == "[Dossier #1] Ledger export fails"  # agents read the support's language

    # [FOLLOW] is understood too, and the list he gets speaks English tags.
    send(settings, mail(OLIVER, "[FOLLOW]"))
    listing = newest(relay, OLIVER, 2)
    assert listing.subject == "Your open cases"
    for part in (words(listing.text()), words(listing.html())):
        assert "[Case #1]" in part and "Accounting 100" in part and "main contact: Oliver Bennett" in part


def test_an_english_customer_who_mistypes_the_code_is_shown_the_english_tag(gateway, relay, engine) -> None:
    send(gateway.settings, mail(OLIVER, "[CUSTOMER C30150] [SERIAL SN-42EE-9001] [SEVERITY high] Ledger export fails",
                                "Hi,\n\nThe export stops.\n"))
    refusal = newest(relay, OLIVER)
    for part in (words(refusal.text()), words(html.unescape(refusal.html()))):
        assert "[CUSTOMER C30105]" in part and "[CLIENT " not in part
