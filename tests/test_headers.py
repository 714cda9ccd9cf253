"""Every header the gateway writes decodes, with a strict RFC 2047 decoder, to exactly the
text meant. Generated French and English subjects and display names of every length go
through `send.build` and `as_bytes()`, and are read back as mutt or Thunderbird read them
(tests/strict.py): unfolded, then decoded by `email.header.decode_header`."""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from email.message import EmailMessage

import strict
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.config import Settings
from gateway.models import Delivery, OutboundMessage
from gateway.outbound import headers, token
from gateway.outbound.compose import clean_header
from gateway.outbound.send import build

SUPPORT = "assistance@editeur.example"
INACTIVE = "Licence SN-7F3A-2291 inactive : votre demande n'a pas pu être traitée"
VOCABULARY = [
    "Bonjour", "Licence", "inactive", "votre", "demande", "n'a", "pas", "pu", "être", "traitée",
    "Dossier", "Impossible", "d'éditer", "les", "factures", "Écran", "figé", "après", "la", "mise",
    "à", "jour", "réglé", "Où", "en", "est-on", "clôture", "problème", "aujourd’hui", "l'équipe",
    "Boulangeries", "Lefèvre", "Hélène", "Dupré", "Grégoire", "Noël", "ça", "naïf", "cœur", "Œuvre",
    "déjà", "reçu", "Thé", "crème", "brûlée", "Your", "request", "could", "not", "be", "processed",
    "invoice", "can't", "won't", "the", "and", "RE:", "Fwd:", "[Dossier", "#123]", "[INFO]",
    "«", "»", "…", "—", "–", ":", ";", ",", ".", "!", "?", "(", ")", "€", "100%", "n°", "N°", "_",
    "=", "=?", "?=", "=?utf-8?q?x?=", '"guillemets"', "a\\b", "<b>", "2026-11-28", "10:02",
    "https://editeur.example/support/dossiers/123?onglet=historique&filtre=tous-les-messages",
    "日本語", "😀",
]
WORD = st.one_of(st.sampled_from(VOCABULARY), st.from_regex(r"SN-[0-9A-F]{4}-[0-9]{4}", fullmatch=True),
                 st.integers(0, 10**9).map(str))
# What reaches a header: text from the vocabulary, or anything, once `clean_header` has made it one line.
SUBJECTS = st.one_of(st.lists(WORD, max_size=120).map(" ".join), st.text(max_size=600)).map(clean_header)
NAMES = st.one_of(st.lists(WORD, max_size=8).map(" ".join), st.text(max_size=80),
                  st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)).map(clean_header)
CONTACTS = st.lists(st.tuples(NAMES, st.from_regex(r"[a-z]{1,12}\.[a-z]{1,12}@[a-z]{1,12}\.example", fullmatch=True)),
                    max_size=4)


def delivery(subject: str, to: list[tuple[str, str]], cc: list[tuple[str, str]]) -> Delivery:
    """A delivery as the outbox holds it (not stored: `build` needs no database)."""
    message = OutboundMessage(
        created_at=dt.datetime(2026, 11, 28, 10, 2), kind="case_opened", message_id="<4f2a@editeur.example>",
        in_reply_to="<opening@boulangeries-lefevre.example>",
        references="<opening@boulangeries-lefevre.example> <answer@editeur.example>",
        auto_submitted="auto-replied", to_header=[list(p) for p in to], cc_header=[list(p) for p in cc],
        subject=subject, text="Bonjour,\n", html="<p>Bonjour,</p>")
    recipient = (to or cc or [("", "claire.martin@boulangeries-lefevre.example")])[0][1]
    return Delivery(recipient=recipient, token=token.make(b"k" * 32, 123, recipient), message=message)


def written(subject: str, to: list[tuple[str, str]], cc: list[tuple[str, str]], support_name: str) -> bytes:
    base = Settings()
    config = dataclasses.replace(base, support=dataclasses.replace(base.support, address=SUPPORT, name=support_name))
    return build(delivery(subject, to, cc), config).as_bytes()


@settings(max_examples=400, deadline=None)
@given(SUBJECTS)
@example(INACTIVE)
@example("Licence SN-1B22-0042 inactive : votre demande n'a pas pu être traitée")
@example("[Dossier #123] Impossible d'éditer les factures")
@example("")
def test_every_subject_decodes_exactly(subject: str) -> None:
    contacts = [("Claire Martin", "claire.martin@boulangeries-lefevre.example")]
    raw = written(subject, contacts, [], "Support Éditeur")
    assert strict.problems(raw, subject, {"To": contacts}) == []
    # The threading headers are written as before, plain ASCII.
    assert strict.values(raw, "Message-ID") == ["<4f2a@editeur.example>"]
    assert strict.values(raw, "In-Reply-To") == ["<opening@boulangeries-lefevre.example>"]
    assert strict.values(raw, "References") == ["<opening@boulangeries-lefevre.example> <answer@editeur.example>"]
    assert strict.values(raw, "Date") == ["Sat, 28 Nov 2026 10:02:00 +0000"]


@settings(max_examples=300, deadline=None)
@given(CONTACTS, CONTACTS, NAMES)
@example([("Hélène Dupré", "helene.dupre@clinique-leman.example")],
         [("Paul Girard", "paul.girard@boulangeries-lefevre.example"), ("Dupré, Hélène", "h.d@clinique-leman.example")],
         "Support Éditeur")
@example([("Martin, Claire (DSI)", "claire.martin@boulangeries-lefevre.example")], [], 'Support "Éditeur"')
def test_every_display_name_decodes_exactly(to: list[tuple[str, str]], cc: list[tuple[str, str]],
                                            support_name: str) -> None:
    raw = written("[Dossier #123] Factures", to, cc, support_name)
    expected = {"To": to, "Cc": cc, "From": [(support_name, SUPPORT)], "Reply-To": [(support_name, None)]}
    assert strict.problems(raw, "[Dossier #123] Factures", expected) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.text(max_size=100))
def test_the_writer_keeps_any_text_even_uncleaned(subject: str, name: str) -> None:
    # Control characters and line breaks too: they travel inside encoded words, so no
    # header can be injected and nothing is lost.
    msg = EmailMessage()
    msg["Subject"] = headers.unstructured("Subject", subject)
    msg["To"] = headers.address_list("To", [(name, "x@example.org")])
    raw = msg.as_bytes()
    assert strict.problems(raw, subject, {"To": [(name, "x@example.org")]}) == []
    assert copy.deepcopy(msg).as_bytes() == raw
