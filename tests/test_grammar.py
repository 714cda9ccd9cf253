"""The email grammar as pure functions: field names as people write them, and body lines
read and removed only when they are known fields."""
from __future__ import annotations

import pytest

from gateway.models import reference_key
from gateway.pipeline.grammar import NAMES, normalise, parse_request


@pytest.mark.parametrize("written, field", [
    ("N° de série", "serial"), ("No de série", "serial"), ("Numéro de série", "serial"),
    ("n° serie", "serial"), ("Nº série", "serial"), ("Serial number", "serial"), ("SN", "serial"),
    ("Code client", "client"), ("Client code", "client"), ("Numéro de client", "client"),
    ("CUSTOMER", "client"), ("Niveau de criticité", "criticality"), ("Severity", "criticality"),
    ("Demande d'information", "info"), ("PRIORITÉ", "priority"),
])
def test_field_names_as_people_write_them(written, field) -> None:
    assert NAMES[normalise(written)] == field


@pytest.mark.parametrize("written", ["Voici une précision", "Menu", "Message d'erreur", "Solution",
                                     "Circonstances", "Note de frais", "Nom"])
def test_ordinary_words_before_a_colon_are_not_fields(written) -> None:
    assert normalise(written) not in NAMES or NAMES[normalise(written)] not in (
        "client", "serial", "criticality", "module", "distribution", "priority")


def test_only_known_field_lines_of_the_top_paragraph_are_read() -> None:
    text = ("Client : C10042\nMenu : Traitement > Lettrage\nSérie : SN-1\n\n"
            "Criticité : haute\nLe reste.")
    request = parse_request("Titre", text)
    assert request.fields == {"client": "C10042", "serial": "SN-1"}
    assert request.body(("client", "serial")) == "Menu : Traitement > Lettrage\n\nCriticité : haute\nLe reste."
    assert request.body(("serial",)).startswith("Client : C10042\nMenu")
    assert request.body() == text


def test_the_subject_wins_and_the_body_line_is_still_a_field() -> None:
    request = parse_request("[CLIENT C1] Titre", "Client : C2\n\nTexte")
    assert request.fields["client"] == "C1"
    assert request.body(("client",)) == "Texte"


def test_a_priority_line_says_yes_or_no() -> None:
    assert "priority" in parse_request("T", "Priorité : oui\n\nx").flags
    assert "priority" not in parse_request("T", "Priorité : non\n\nx").flags


@pytest.mark.parametrize("typed", ["SN-7F3A-2291", "sn-7f3a-2291", "SN 7F3A 2291", "sn.7f3a.2291",
                                   "SN7F3A2291", " SN – 7F3A – 2291 "])
def test_serials_compare_without_case_spaces_dashes_and_dots(typed) -> None:
    assert reference_key(typed) == reference_key("SN-7F3A-2291")


@pytest.mark.parametrize("subject, flag", [
    ("[LICENCES]", "licences"), ("[Licenses]", "licences"), ("[licences] merci", "licences"),
    ("[INTERLOCUTEURS]", "contacts"), ("[Contacts]", "contacts"),
])
def test_the_portal_lists_are_flags_apart_from_the_contact_command(subject, flag) -> None:
    request = parse_request(subject, "")
    assert flag in request.flags and "contact" not in request.flags
    assert "contact" in parse_request("[INTERLOCUTEUR AJOUT]", "").flags
    assert "contacts" not in parse_request("[CONTACT ADD]", "").flags


def test_a_name_line_is_read_and_stays_in_a_new_cases_text() -> None:
    from gateway.pipeline.grammar import BODY_FIELDS
    request = parse_request("[INSCRIPTION]", "Nom : Julie Noël\nClient : C10042\n\nBonjour")
    assert request.fields == {"name": "Julie Noël", "client": "C10042"}
    assert parse_request("[REGISTER]", "Name: Jane Doe\n\nHello").fields["name"] == "Jane Doe"
    assert request.body(BODY_FIELDS) == "Nom : Julie Noël\n\nBonjour"  # opening a case keeps it
