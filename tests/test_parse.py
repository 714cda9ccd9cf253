"""Tests of gateway.pipeline.parse: real-world mail, our own fixtures, the generated corpus.

Fixtures live in tests/data/parse/. The real-world corpus (../shared/corpus/real-world/,
or GATEWAY_CORPUS_DIR) holds deliberately broken messages: each must parse without an
exception and give well-typed fields.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

from gateway.pipeline.parse import Attachment, ParsedMail, parse, strip_reply

DATA = Path(__file__).parent / "data" / "parse"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _corpus_dir() -> Path | None:
    """The real-world corpus: beside the project, else where GATEWAY_CORPUS_DIR says."""
    for candidate in (SHARED / "corpus" / "real-world", os.environ.get("GATEWAY_CORPUS_DIR")):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


CORPUS = _corpus_dir()
NO_CORPUS = f"real-world corpus not found at {SHARED / 'corpus' / 'real-world'} (set GATEWAY_CORPUS_DIR)"


def _corpus_files() -> list[Any]:
    if CORPUS is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_CORPUS))]
    files = sorted(path for path in CORPUS.rglob("*") if path.is_file())
    return [pytest.param(path, id=str(path.relative_to(CORPUS))) for path in files]


def load(name: str) -> ParsedMail:
    return parse((DATA / name).read_bytes())


def _conforms(value: object, hint: Any) -> bool:
    """isinstance() for the annotations ParsedMail uses (X | None, tuple[X, ...])."""
    origin = get_origin(hint)
    if origin is tuple:
        return isinstance(value, tuple) and all(_conforms(item, get_args(hint)[0]) for item in value)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def assert_well_formed(parsed: ParsedMail) -> None:
    """Every field has its declared type and keeps the contract's promises."""
    for field, hint in get_type_hints(ParsedMail).items():
        assert _conforms(getattr(parsed, field), hint), f"{field}={getattr(parsed, field)!r} is not {hint}"
    for field, hint in get_type_hints(Attachment).items():
        for attachment in parsed.attachments:
            assert _conforms(getattr(attachment, field), hint), f"attachment {field} is not {hint}"
    assert parsed.date is None or parsed.date.tzinfo is not None
    assert parsed.message_id is None or (parsed.message_id[0], parsed.message_id[-1]) == ("<", ">")
    assert parsed.from_addr is None or parsed.from_addr == parsed.from_addr.lower()
    for address in (*parsed.to, *parsed.cc, *parsed.reply_to, *parsed.failed_recipients):
        assert address == address.lower() and "@" in address and " " not in address
    for attachment in parsed.attachments:
        assert_safe_filename(attachment.filename)
        assert attachment.content_type == attachment.content_type.lower()
    assert "\r" not in parsed.text and "\x00" not in parsed.text
    assert len(parsed.new_text) <= len(parsed.text)


def assert_safe_filename(name: str) -> None:
    assert name, "empty file name"
    assert len(name) <= 150, name
    assert "/" not in name and "\\" not in name, name
    assert not name.startswith("."), name
    assert name.isprintable(), repr(name)


# --- Real-world corpus -------------------------------------------------------

def test_the_shared_corpus_is_there() -> None:
    """Without ../shared the corpus tests skip; CI (GATEWAY_TEST_REQUIRE_ALL=1) must not."""
    if CORPUS is not None and MAKE_CORPUS.is_file():
        return
    if os.environ.get("GATEWAY_TEST_REQUIRE_ALL") == "1":
        pytest.fail(f"{NO_CORPUS}; GATEWAY_TEST_REQUIRE_ALL=1 forbids skipping the corpus tests")
    pytest.skip(NO_CORPUS)


@pytest.mark.parametrize("path", _corpus_files())
def test_real_world_message_parses_to_typed_fields(path: Path) -> None:
    assert_well_formed(parse(path.read_bytes()))


@pytest.mark.skipif(CORPUS is None, reason=NO_CORPUS)
def test_outlook_msg_file_gives_empty_fields() -> None:
    assert CORPUS is not None
    parsed = parse((CORPUS / "mail-parser" / "mail_outlook_1").read_bytes())
    assert (parsed.from_addr, parsed.subject, parsed.text, parsed.attachments) == (None, "", "", ())


@pytest.mark.parametrize("raw", [
    b"",
    b"\n\n\n",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2000),
    random.Random(7).randbytes(4000),
    b"Subject: no newline at all",
    b"Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: message/rfc822\n\n--x--",
    b"From: a@b.example\nContent-Type: text/plain; charset=\x00\xff\n\n\xff\xfe",
    b"From: a@b.example\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!=",
], ids=["empty", "blank-lines", "ole-header", "random", "no-newline", "empty-rfc822", "nul-charset", "bad-base64"])
def test_hopeless_input_never_raises(raw: bytes) -> None:
    assert_well_formed(parse(raw))


@pytest.mark.parametrize("content_type", [
    b"text/plain; charset=\x00\xff",  # no codec lookup accepts a NUL
    b"text/plain; charset*=us-ascii''utf-8",  # RFC 2231: get_payload() would raise TypeError
])
def test_odd_charset_parameters_keep_the_body(content_type: bytes) -> None:
    raw = b"From: a@client.example\nContent-Type: " + content_type + b"\n\ncaf\xc3\xa9 cr\xc3\xa8me"
    assert parse(raw).text == "café crème"


def test_absurd_nesting_keeps_the_headers() -> None:
    depth = 3000
    raw = b"From: Ana <ana@client.example>\nSubject: deep\nContent-Type: multipart/mixed; boundary=b0\n\n"
    raw += b"".join(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(depth))
    parsed = parse(raw)
    assert (parsed.subject, parsed.from_addr) == ("deep", "ana@client.example")
    assert_well_formed(parsed)


# --- Charsets and headers ------------------------------------------------------

def test_windows_1252_quoted_printable_with_encoded_subject() -> None:
    parsed = load("cp1252_qp.eml")
    assert parsed.subject == "[CLIENT C10042] Problème d’accès – 50 €"
    assert (parsed.from_name, parsed.from_addr) == ("Hélène Dupré", "helene.dupre@client.example")
    assert "l’export coûte 50 € de frais – c’est une erreur." in parsed.text
    assert "l’œuvre" in parsed.text
    assert parsed.date == datetime(2026, 11, 2, 7, 8, tzinfo=UTC)
    assert parsed.return_path == "helene.dupre@client.example"


def test_iso_8859_1_label_on_windows_1252_bytes() -> None:
    text = load("latin1_mislabelled.eml").text
    assert "1 254,37 € – merci d’avance." in text
    assert text.endswith("Cœur de métier : la comptabilité.")


def test_raw_utf8_headers() -> None:
    parsed = load("utf8_raw_headers.eml")
    assert parsed.subject == "[CLIENT C10042] Relevés bancaires en échec"
    assert (parsed.from_name, parsed.from_addr) == ("Jérôme Bénard", "jerome.benard@client.example")
    assert parsed.to == ("support@editeur.example", "gaelle@client.example")
    assert parsed.cc == ("chloe@client.example",)  # "not-an-address" dropped
    assert parsed.text == "Les relevés du Crédit Agricole ne s'importent plus."


@pytest.mark.parametrize(("charset", "body", "expected"), [
    ("x-unknown", "café crème".encode(), "café crème"),
    ("us-ascii", "café crème".encode(), "café crème"),
    ("us-ascii", "café crème".encode("latin-1"), "café crème"),
    ("unicode-1-1-utf-7", "café crème".encode("latin-1"), "café crème"),
    ("unicode-1-1-utf-7", b"caf+AOk- cr+AOg-me", "café crème"),
    ("utf-8", "café crème".encode("latin-1"), "café crème"),
    ("iso-8859-1", "café crème".encode(), "café crème"),
    ("utf-8", "café ".encode() + b"\xe9t\xe9", "café été"),
    ("koi8-r", "привет".encode("koi8-r"), "привет"),
])
def test_body_charsets_come_out_readable(charset: str, body: bytes, expected: str) -> None:
    raw = f"From: a@client.example\nContent-Type: text/plain; charset={charset}\n\n".encode() + body
    assert parse(raw).text == expected


def test_invalid_from_gives_no_address() -> None:
    assert load("from_not_an_address.eml").from_addr is None
    two = load("from_two_addresses.eml")
    assert (two.from_addr, two.from_name) == (None, "Alice")


@pytest.mark.parametrize("value", [
    "Jean <jean @client.example>", "jean@client.example jean", "<>", "Jean <jean@>", "undisclosed-recipients:;",
])
def test_from_must_be_exactly_one_valid_address(value: str) -> None:
    assert parse(f"From: {value}\nSubject: x\n\nx\n".encode()).from_addr is None


def test_automatic_answer_headers() -> None:
    parsed = load("autoreply.eml")
    assert (parsed.auto_submitted, parsed.precedence, parsed.has_autoreply_header) == ("auto-replied", "bulk", True)
    assert parsed.list_id == "Clients <clients.lists.client.example>"
    assert parsed.return_path == "bounces+123@lists.client.example"
    assert parsed.reply_to == ("secretariat@client.example",)
    assert parsed.subject == "Réponse automatique : absent"
    assert parsed.content_language == "en-gb"
    assert parsed.date == datetime(2026, 11, 4, 8, 0, tzinfo=UTC)  # "-0000": UTC
    assert len(parsed.authentication_results) == 2
    assert "\n" not in parsed.authentication_results[0]
    assert "spf=pass" in parsed.authentication_results[0]
    assert parsed.authentication_results[1] == "mx2.editeur.example; dmarc=fail"


def test_headers_only_message() -> None:
    parsed = load("headers_only.eml")
    assert (parsed.subject, parsed.text, parsed.new_text, parsed.attachments) == ("vide", "", "", ())
    assert parsed.message_id == "<bare-id@client.example>"
    assert (parsed.date, parsed.return_path, parsed.auto_submitted) == (None, None, "")


# --- Bodies -------------------------------------------------------------------

def test_outlook_html_only_becomes_clean_text() -> None:
    parsed = load("outlook_html.eml")
    # The only "<" left are those of "Name <address>" in the quoted Outlook header.
    without_addresses = re.sub(r"<[\w.-]+@[\w.-]+>", "", parsed.text)
    for noise in ("MsoNormal", "<", ">", "o:p", "font-family", "[if", "&nbsp;", "&lt;", "**", "xml"):
        assert noise not in without_addresses, noise
        assert noise not in parsed.new_text, noise
    assert parsed.text.startswith("Bonjour,\n\nLe rapprochement bancaire est toujours incohérent")
    assert "le rapport (https://portail.client.example/rapport?id=42&v=2)" in parsed.text
    assert "\n\n\n" not in parsed.text
    assert "Claire Lemoine" in parsed.new_text
    assert "De :" not in parsed.new_text and "Pouvez-vous relancer" not in parsed.new_text
    assert parsed.in_reply_to == ("<case-12.1@editeur.example>",)
    assert parsed.references == ("<case-12.0@editeur.example>", "<case-12.1@editeur.example>")
    assert parsed.content_language == "fr-fr"


def test_html_text_has_no_markup_left() -> None:
    raw = (
        b"From: a@client.example\nContent-Type: text/html; charset=utf-8\n\n"
        b"<p>1. Ouvrir le module</p><p>- fermer</p><h2>Titre</h2><p><i>x</i> <b>y</b> "
        b"<a href='https://x.example/a'>https://x.example/a</a> <a href='mailto:s@e.example'>s@e.example</a>"
        b"<img src='cid:1' alt='logo'></p><script>alert(1)</script>"
    )
    expected = "1. Ouvrir le module\n\n- fermer\n\nTitre\n\nx y https://x.example/a s@e.example"
    assert parse(raw).text == expected


@pytest.mark.parametrize("markup", [
    b"<html><head><meta charset=utf-8><p>Bonjour</p>",  # <head> never closed
    b"<p>Bonjour</p></style>",  # a stray end tag
    b"<head><title>x</title><style>p {color: red}<body><p>Bonjour</p>",  # <style> closed by nothing but <body>
])
def test_broken_html_keeps_its_text(markup: bytes) -> None:
    raw = b"From: a@client.example\nContent-Type: text/html\n\n" + markup + b"<p>la suite</p>"
    assert parse(raw).text.endswith("la suite")


def test_alternative_prefers_plain_text() -> None:
    assert load("alternative.eml").text == "L'export comptable échoue (version plain)."


def test_encoded_filenames_are_decoded() -> None:
    attachments = load("rfc2231_filename.eml").attachments
    assert [a.filename for a in attachments] == [
        "relevé_bancaire_12.pdf", "échéancier_fournisseurs.pdf", "procédure_appliquée.pdf", "capture.png",
    ]
    assert [a.content_type for a in attachments] == ["application/pdf"] * 3 + ["image/png"]
    assert attachments[0].data == b"%PDF-1.4\n%fake\n"


def test_dangerous_filenames_are_made_safe() -> None:
    names = [a.filename for a in load("dangerous_filenames.eml").attachments]
    assert names[:5] == ["passwd", "a.exe", "htaccess", "facturegpj.exe", "bad name .pdf"]
    assert len(names[5]) == 150 and names[5].endswith(".pdf")
    assert names[6:] == ["attachment-7.pdf", "attachment-8.pdf"]
    for name in names:
        assert_safe_filename(name)


def test_forwarded_message_becomes_an_eml_attachment() -> None:
    parsed = load("forwarded_rfc822.eml")
    assert parsed.text == "Voir le message ci-joint."
    (forwarded,) = parsed.attachments
    assert (forwarded.filename, forwarded.content_type) == ("Relevé 12_2026 _ rejet.eml", "message/rfc822")
    assert b"Message-ID: <inner.1@banque.example>" in forwarded.data
    assert parsed.bounced_message_ids == ()  # not a report


def test_delivery_status_notification() -> None:
    parsed = load("dsn.eml")
    assert (parsed.is_report, parsed.report_type) == (True, "delivery-status")
    assert parsed.failed_recipients == ("gone.user@client.example",)
    assert parsed.bounced_message_ids == ("<case-7.ack@editeur.example>",)
    assert parsed.return_path == ""
    assert parsed.auto_submitted == "auto-replied"
    assert parsed.text.startswith("I'm sorry to have to inform you")
    assert [a.content_type for a in parsed.attachments] == ["message/delivery-status", "message/rfc822"]


# --- Reply stripping ----------------------------------------------------------

@pytest.mark.parametrize(("name", "kept", "gone"), [
    ("reply_fr.eml", "Merci, la mise à jour a réglé le problème des relevés.", ["a écrit", "4.2.8", "Cordialement"]),
    ("reply_en.eml", "Thanks, the patch fixed the bank import.", ["wrote:", "4.2.8"]),
    ("reply_outlook_fr.eml", "Le fichier journal est en pièce jointe.", ["De :", "Envoyé :", "Objet :", "____"]),
    ("reply_outlook_en.eml", "The log file is attached.", ["Original Message", "From:", "Could you send"]),
])
def test_reply_quotes_are_stripped(name: str, kept: str, gone: list[str]) -> None:
    parsed = load(name)
    assert kept in parsed.new_text
    assert parsed.new_text.split("\n")[0] in ("Bonjour,", "Hello,", "Hi,")
    for text in gone:
        assert text not in parsed.new_text, text
    assert not any(line.startswith(">") for line in parsed.new_text.splitlines())


QUOTE = "\n> Bonjour,\n> essayez ceci\n"


@pytest.mark.parametrize(("text", "expected"), [
    # What the library misses.
    ("Voici.\n\n-----Message d'origine-----\nDe : Support\nEnvoyé : lundi\n\nHello", "Voici."),
    ("Voici.\n\n-------- Message d'origine --------\nSujet : souci\nDate : lundi\n\nHello", "Voici."),
    ("Voici.\n\nDe: Support <s@e.example>\nEnvoyé: lundi\nÀ: Jean\nObjet: RE\n\nHello", "Voici."),
    ("Voici.\n\nDe\xa0: Support <s@e.example>\nEnvoyé\xa0: lundi\nÀ\xa0: Jean\nObjet\xa0: RE\n\nx", "Voici."),
    ("Merci.\n\nLe lun. 2 nov. 2026 à 08:08, Marie <m@x.example> a\nécrit :" + QUOTE, "Merci."),
    ("Yes, done." + "\n" + QUOTE, "Yes, done."),
    ("Merci.\n\nJean Dupont wrote:" + QUOTE, "Merci."),
    ("Le 02/11/2026 à 08:08, Marie <m@x.example> a écrit :" + QUOTE, ""),
    ("> only\n> a quote\n", ""),
    # What the library would drop and the customer wrote.
    ("Fait :\n- redémarré le serveur\n- vidé le cache\n\nToujours en erreur.",
     "Fait :\n- redémarré le serveur\n- vidé le cache\n\nToujours en erreur."),
    ("Warning: the mail server refuses our mail.\nPlease help.",
     "Warning: the mail server refuses our mail.\nPlease help."),
    ("Hello,\n\nThanks, but it still fails.\nError 42.\n\nBest regards,\nJohn",
     "Hello,\n\nThanks, but it still fails.\nError 42."),
    ("Bonjour,\n\nJe vous souhaite une\nbonne journée.", "Bonjour,\n\nJe vous souhaite une\nbonne journée."),
    ("Hello\n> question 1\nanswer 1\n> question 2\nanswer 2", "Hello\n> question 1\nanswer 1\n> question 2\nanswer 2"),
    ("--\nJean Dupont", "--\nJean Dupont"),
    # Signatures.
    ("The export fails.\n\n-- \nJean Dupont\nACME", "The export fails."),
    ("L'export échoue.\n\nCordialement,\nJean Dupont\nTél. : 01 02 03 04 05", "L'export échoue."),
    # A forward is content, not history.
    ("Voir ci-dessous.\n\n---------- Forwarded message ---------\nFrom: Banque <b@x.example>\n"
     "Date: Mon, 2 Nov 2026\nSubject: Rejet\nTo: Jean <j@x.example>\n\nFichier rejeté.",
     "Voir ci-dessous.\n\n---------- Forwarded message ---------\nFrom: Banque <b@x.example>\n"
     "Date: Mon, 2 Nov 2026\nSubject: Rejet\nTo: Jean <j@x.example>\n\nFichier rejeté."),
    ("", ""),
])
def test_strip_reply(text: str, expected: str) -> None:
    assert strip_reply(text) == expected


# --- Generated corpus ---------------------------------------------------------

MAKE_CORPUS = SHARED / "bench" / "make_corpus.py"


@pytest.mark.skipif(not MAKE_CORPUS.is_file(), reason=f"corpus generator not found at {MAKE_CORPUS}")
def test_generated_corpus(tmp_path: Path) -> None:
    mailbox = tmp_path / "mb"
    subprocess.run(
        [sys.executable, str(MAKE_CORPUS), "--count", "60", "--seed", "7", "--out", str(mailbox), "--clean"],
        check=True, capture_output=True,
    )
    files = sorted(mailbox.glob("*.eml"))
    assert len(files) == 60
    problems = []
    replies = 0
    for path in files:
        parsed = parse(path.read_bytes())
        assert_well_formed(parsed)
        found = []
        if "[CLIENT" not in parsed.subject:
            found.append(f"subject {parsed.subject!r}")
        if not (parsed.from_addr or "").endswith(".example"):
            found.append(f"from {parsed.from_addr!r}")
        if not parsed.text:
            found.append("no text")
        if parsed.in_reply_to:
            replies += 1
            found += [f"new_text has {s!r}" for s in ("a écrit", "De :", "Envoyé :") if s in parsed.new_text]
            if any(line.startswith(">") for line in parsed.new_text.splitlines()):
                found.append("new_text has a '>' line")
            if not parsed.new_text:
                found.append("empty new_text")
        problems += [f"{path.name}: {problem}" for problem in found]
    assert replies > 10
    assert problems == []
