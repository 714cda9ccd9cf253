"""The outbound templates: every kind renders in French and English from a realistic context.

Contexts are built from plain objects (no database): the templates only read attributes.
"""
from __future__ import annotations

import datetime as dt
import html.parser
import re
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from gateway.outbound import compose
from gateway.outbound.outbox import MailFile

TEMPLATES = str(Path(__file__).resolve().parent.parent / "templates")
LANGS = ("fr", "en")
XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

SETTINGS = NS(
    support=NS(address="assistance@editeur.example", name="Éditeur Logiciels", case_tag="Dossier",
               language="fr"),
    sales_admin=NS(address="adv@editeur.example", phone="+33 1 23 45 67 89"),
    cases=NS(reopen_days=7, resolved_autoclose_days=7),
    jobs=NS(timezone="Europe/Paris"),
)

PROBLEM_CODES = {
    "missing_client": {}, "missing_serial": {}, "missing_criticality": {},
    "bad_criticality": {"value": "urgentissime"},
    "missing_title": {}, "missing_details": {},
    "not_a_contact": {"client": "C10042"},
    "unknown_serial": {"serial": "SN-0000-0000", "client": "C10042"},
    "unknown_module": {"module": "Paie", "modules": ["Comptabilité", "Immobilisations"]},
    "case_not_found": {"number": 999},
    "case_closed_too_long": {"days": 7},
    "agent_needs_case": {},
    "needs_case": {"command": "close"},
    "not_available": {"command": "contact"},
    "empty_message": {},
    "licence_inactive": {"serial": "SN-7F3A-2291"},
    "confirmation_expired": {"hours": 72},
}


def problem(code: str, **params) -> NS:
    return NS(code=code, params=params)


def contact(name: str, email: str) -> NS:
    return NS(name=name, email=email)


def make_case(title: str = "Impossible d'éditer le grand livre", status: str = "nouveau",
              module: str | None = "Comptabilité", priority: bool = False) -> NS:
    client = NS(code="C10042", name="Durand & Fils")
    licence = NS(serial="SN-7F3A-2291", product="Compta Pro",
                 modules=["Comptabilité", "Immobilisations"], client=client)
    main = contact("Marie Durand", "marie.durand@durand.example")
    return NS(id=4711, number=4711, title=title, status=status, criticality=2, priority=priority,
              module=module, licence=licence, client=client, main_contact=main,
              distribution=[NS(contact=main), NS(contact=contact("Paul Martin", "paul.martin@durand.example")),
                            NS(contact=contact("", "compta@durand.example"))])


def case_subject(case: NS) -> str:
    return compose.clean_header(f"[{SETTINGS.support.case_tag} #{case.id}] {case.title}")


def base_context(case: NS | None) -> dict:
    return {"case": case, "case_subject": case_subject(case) if case else "", "settings": SETTINGS}


EXAMPLE = NS(code="C10042", serial="SN-7F3A-2291")  # the reader's own code and serial
AUTHOR = NS(address="marie.durand@durand.example", name="Marie Durand")
ATTACHMENTS = [MailFile(31, "capture écran.png", 48_213, True, True, "file31@editeur.example"),
               MailFile(32, "journal.log", 1_204, True, False, "file32@editeur.example"),
               MailFile(33, "base.zip", 25_000_000, False, False, "file33@editeur.example")]


def contexts(evil: str = "") -> dict[str, list[dict]]:
    """kind -> contexts to render it with; `evil` is appended to every piece of user text."""
    title = "Impossible d'éditer le grand livre" + evil
    text = "Bonjour,\n\nLe grand livre ne s'édite plus depuis la mise à jour.\nMerci." + evil
    case = make_case(title=title)
    licence = case.licence
    request = NS(title=title, fields={"client": "C10042"})
    sender = NS(address="marie.durand@durand.example", name="Marie Durand" + evil)
    # Every customer-facing problem at once (agent_needs_case gets its own refusal below).
    all_problems = [problem(code, **params) for code, params in PROBLEM_CODES.items()
                    if code != "agent_needs_case"]
    refusal = {"problems": all_problems, "request": request, "original_subject": "Urgent : " + title,
               "sender": sender, "example": EXAMPLE}
    opened = {"not_added": ["inconnu@ailleurs.example"], "priority_wanted": True,
              "priority": NS(status="granted", points_left=2), "details": text,
              "attachments": ATTACHMENTS, "licence": licence, "author": sender}
    return {
        "refusal": [
            {**base_context(None), **refusal},
            {**base_context(case), **refusal, "problems": [problem("case_closed_too_long", days=7)]},
            {**base_context(None), **refusal, "problems": [problem("agent_needs_case"), problem("bad_criticality", value="urgent" + evil)],
             "original_subject": ""},
        ],
        "licence_inactive": [
            {**base_context(None), "licence": licence, "problems": [problem("licence_inactive")],
             "request": request, "original_subject": title, "sender": sender},
            {**base_context(case), "licence": licence, "problems": [problem("licence_inactive")],
             "request": request, "original_subject": title, "sender": sender},
        ],
        "sales_alert": [
            {**base_context(None), "licence": licence, "client": NS(code="C10042", name="Durand & Fils" + evil),
             "sender": sender, "subject": title, "date": dt.datetime(2024, 5, 3, 14, 5), "request": r}
            for r in ("open", "message", "info", "priority")
        ],
        "case_opened": [
            {**base_context(case), **opened},
            {**base_context(make_case(title=title, module=None)), **opened, "not_added": [],
             "priority_wanted": False, "priority": None, "details": "", "attachments": []},
        ] + [{**base_context(case), **opened, "priority": NS(status=s, points_left=0)}
             for s in ("already", "not_eligible", "no_points", "granted")],
        "agent_new_case": [
            {**base_context(case), **opened},
            {**base_context(make_case(title=title, module=None)), **opened, "not_added": [],
             "priority_wanted": False, "priority": None, "details": "", "attachments": []},
        ],
        "case_message": [
            {**base_context(case), "author": sender, "text": text, "attachments": ATTACHMENTS, "reopened": r}
            for r in (False, True)
        ],
        "agent_message": [
            {**base_context(make_case(title=title, status=s)), "agent_name": "Jean Support" + evil,
             "text": text, "attachments": ATTACHMENTS if changed else [], "status_changed": changed}
            for s in ("en_cours", "attente_client", "resolu", "clos") for changed in (False, True)
        ],
        "info_ack": [{**base_context(case), "text": text}, {**base_context(None), "text": text}],
        "agent_info_request": [{**base_context(case), "author": sender, "text": text, "attachments": ATTACHMENTS},
                               {**base_context(None), "author": sender, "text": text, "attachments": []}],
        "case_closed": [
            {**base_context(case), "closed_by": by, "author_name": name, "text": text if by == "customer" else "",
             "attachments": ATTACHMENTS if by == "customer" else []}
            for by, name in (("customer", "Marie Durand" + evil), ("agent", "Jean Support" + evil),
                             ("system", ""))
        ],
        "priority_result": [
            {**base_context(case), "priority": NS(status=s, points_left=n)}
            for s, n in (("granted", 3), ("granted", 0), ("already", 1), ("not_eligible", 0), ("no_points", 0))
        ],
        "notice_digest": [
            {**base_context(None), "window": 15, "attachments": ATTACHMENTS, "notices": [
                NS(created_at=dt.datetime(2026, 11, 30, 9, 5), subject=case_subject(case), text=text),
                NS(created_at=dt.datetime(2026, 11, 30, 9, 6), subject=case_subject(case), text=text)]},
            {**base_context(None), "window": 15, "attachments": [], "notices": [
                NS(created_at=dt.datetime(2026, 11, 30, 9, 5), subject=case_subject(case), text=text)]},
        ],
        "confirm_request": [
            {**base_context(None), "kind": "agent", "about": case, "original_subject": "[Dossier #4711] " + title,
             "hours": 72, "excerpt": text, "more": True, "files": ["capture.png"]},
            {**base_context(None), "kind": "contact", "about": None, "original_subject": "", "hours": 72,
             "excerpt": "Nom : Julie Noël" + evil, "more": False, "files": []},
        ],
    }


KINDS = sorted(contexts())
CASES = [(kind, lang, i) for kind in KINDS for lang in LANGS for i in range(len(contexts()[kind]))]


class _Checker(html.parser.HTMLParser):
    """Every non-void element that is opened is closed, in order."""
    VOID = {"br", "meta", "img", "hr", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack}")
        else:
            self.stack.pop()


def assert_well_rendered(r: compose.Rendered, ctx: dict) -> None:
    """What every rendered mail must be: a one-line subject (the case's for case mails),
    plain text without markup or entities, a well-nested HTML document without styles."""
    assert r.subject.strip() and "\n" not in r.subject
    case = ctx["case"]
    if case is not None:
        assert r.subject == ctx["case_subject"]
        assert str(case.id) in r.text
        assert str(case.id) in r.html
    else:
        assert not r.subject.startswith("[")
    assert r.text.strip()
    for rendered in (r.text, r.html):
        assert "None" not in rendered and "Undefined" not in rendered
    assert "\u00a0" not in r.text
    # Plain text: no markup, no entities.
    assert not re.search(r"&(?:[a-z]+|#\d+);", r.text)
    assert not re.search(r"<(?:p|br|div|table|td|li|code|span)[ >/]", r.text)
    # HTML: a whole document, well nested.
    assert r.html.lstrip().startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(r.html)
    checker.close()
    assert not checker.errors and checker.stack == [], (checker.errors, checker.stack)
    assert "<style" not in r.html and "<link" not in r.html and "class=" not in r.html


@pytest.mark.parametrize("kind,lang,index", CASES)
def test_renders(kind, lang, index):
    ctx = contexts()[kind][index]
    assert_well_rendered(compose.render(TEMPLATES, kind, lang, ctx), ctx)


@pytest.mark.parametrize("kind,lang,index", CASES)
def test_user_text_is_escaped_in_html(kind, lang, index):
    ctx = contexts(evil=XSS)[kind][index]
    r = compose.render(TEMPLATES, kind, lang, ctx)
    assert XSS not in r.html
    assert "<script" not in r.html
    # Every kind shows at least one piece of user text (title, text, name...), escaped.
    assert XSS_ESCAPED in r.html
    # The text version is not escaped.
    assert "&lt;" not in r.text


def test_case_subject_and_number_in_text():
    case = make_case()
    ctx = {**base_context(case), "priority": NS(status="granted", points_left=1)}
    for lang in LANGS:
        r = compose.render(TEMPLATES, "priority_result", lang, ctx)
        assert r.subject == "[Dossier #4711] Impossible d'éditer le grand livre"
        assert "4711" in r.text


def test_refusal_without_case_has_own_subject():
    ctx = contexts()["refusal"][0]
    subjects = {lang: compose.render(TEMPLATES, "refusal", lang, ctx).subject for lang in LANGS}
    assert subjects["fr"].startswith("Votre demande n'a pas pu être traitée")
    assert subjects["en"].startswith("Your request could not be processed")
    long = {**ctx, "original_subject": "x" * 300}
    assert len(compose.render(TEMPLATES, "refusal", "fr", long).subject) < 150


def test_refusal_shows_example_and_grammar():
    ctx = contexts()["refusal"][0]
    fr = compose.render(TEMPLATES, "refusal", "fr", ctx)
    assert "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute]" in fr.text
    for tag in ("[Dossier #123]", "[CLOTURE]", "[INFO]", "bloquante", "haute", "normale", "basse"):
        assert tag in fr.text
    en = compose.render(TEMPLATES, "refusal", "en", ctx)
    assert "[CUSTOMER C10042] [SERIAL SN-7F3A-2291] [SEVERITY high]" in en.text
    for tag in ("[Case #123]", "[CLOSE]", "[INFO]", "blocking", "high", "normal", "low"):
        assert tag in en.text


def _explainers(lang: str):
    """explain() from the text and HTML problem macros, with a context that has settings."""
    out = []
    for autoescape, ext in ((False, "txt"), (True, "html")):
        env = compose.environment(TEMPLATES, autoescape)
        module = env.get_template(f"{lang}/_problems.{ext}").make_module(
            {"settings": SETTINGS, "lang": lang, "case_tag": compose.case_tag(SETTINGS.support.case_tag, lang)})
        out.append(module.explain)
    return out


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("code", sorted(PROBLEM_CODES))
def test_every_problem_code_is_explained(lang, code):
    for explain in _explainers(lang):
        fallback = str(explain(problem("__unknown__"))).strip()
        assert "__unknown__" in fallback
        sentence = str(explain(problem(code, **PROBLEM_CODES[code]))).strip()
        assert sentence
        assert sentence != fallback.replace("__unknown__", code)
        assert code not in sentence


@pytest.mark.parametrize("lang", LANGS)
def test_problem_explanations_mention_their_values(lang):
    explain_text, _ = _explainers(lang)
    text = lambda code, **kw: str(explain_text(problem(code, **kw))).replace("\u00a0", " ")  # noqa: E731
    assert "urgentissime" in text("bad_criticality", value="urgentissime")
    assert "C10042" in text("not_a_contact", client="C10042")
    assert "INSCRIPTION" in text("not_a_contact", client="C10042") or "REGISTER" in text("not_a_contact", client="C10042")
    serial = text("unknown_serial", serial="SN-1", client="C10042")
    assert "SN-1" in serial and "C10042" in serial
    modules = text("unknown_module", module="Paie", modules=["Compta", "Immo"])
    assert "Paie" in modules and "Compta" in modules and "Immo" in modules
    assert ("[Dossier #N]" if lang == "fr" else "[Case #N]") in text("agent_needs_case")
    assert "30" in text("case_closed_too_long", days=30)
    # A case that cannot be found: neutral, with or without a number.
    assert text("case_not_found") and "123" in text("case_not_found", number=123)


@pytest.mark.parametrize("lang", LANGS)
def test_not_a_contact_does_not_say_whether_the_client_exists(lang):
    explain_text, _ = _explainers(lang)
    sentence = str(explain_text(problem("not_a_contact", client="C99999"))).lower()
    for word in ("inconnu", "n'existe", "unknown", "does not exist", "exist"):
        assert word not in sentence


@pytest.mark.parametrize("lang", LANGS)
def test_unknown_serial_never_suggests_another_owner(lang):
    explain_text, _ = _explainers(lang)
    sentence = str(explain_text(problem("unknown_serial", serial="SN-1", client="C1"))).lower()
    for word in ("autre client", "another", "belongs", "appartient"):
        assert word not in sentence


def test_priority_outcomes_are_distinct():
    case = make_case()
    for lang in LANGS:
        texts = {s: compose.render(TEMPLATES, "priority_result", lang,
                                   {**base_context(case), "priority": NS(status=s, points_left=2)}).text
                 for s in ("granted", "already", "not_eligible", "no_points")}
        assert len(set(texts.values())) == 4
        assert "2" in texts["granted"]


def test_case_opened_lists_distribution_and_not_added():
    ctx = contexts()["case_opened"][0]
    for lang in LANGS:
        r = compose.render(TEMPLATES, "case_opened", lang, ctx)
        assert "Paul Martin <paul.martin@durand.example>" in r.text
        assert "compta@durand.example" in r.text
        assert "inconnu@ailleurs.example" in r.text
        assert ("[Dossier #4711]" if lang == "fr" else "[Case #4711]") in r.text
        assert ("[CLOTURE]" if lang == "fr" else "[CLOSE]") in r.text
        assert ("haute" if lang == "fr" else "high") in r.text
        assert "Comptabilité" in r.text and "SN-7F3A-2291" in r.text


def test_agent_message_status_lines():
    for lang in LANGS:
        seen = set()
        for s in ("attente_client", "resolu", "clos"):
            ctx = {**base_context(make_case(status=s)), "agent_name": "Jean", "text": "Voici le correctif.",
                   "attachments": [], "status_changed": True}
            r = compose.render(TEMPLATES, "agent_message", lang, ctx)
            assert r.text.startswith("Voici le correctif.")
            seen.add(r.text)
        assert len(seen) == 3


def test_sales_alert_lists_all_facts():
    ctx = contexts()["sales_alert"][0]
    for lang in LANGS:
        r = compose.render(TEMPLATES, "sales_alert", lang, ctx)
        assert "C10042" in r.subject and "Durand & Fils" in r.subject and "SN-7F3A-2291" in r.subject
        # 14:05 UTC is 16:05 in Paris in May.
        when = {"fr": "03/05/2024 16:05 (heure de Paris)", "en": "3 May 2024 16:05 (Paris time)"}[lang]
        for fact in ("C10042", "Durand & Fils", "SN-7F3A-2291", "Compta Pro", "marie.durand@durand.example",
                     when, "grand livre"):
            assert fact in r.text


def test_case_closed_mentions_reopen_delay():
    for lang in LANGS:
        for ctx in contexts()["case_closed"]:
            assert "7" in compose.render(TEMPLATES, "case_closed", lang, ctx).text


def test_unknown_language_falls_back_to_french():
    ctx = contexts()["info_ack"][0]
    assert compose.render(TEMPLATES, "info_ack", "de", ctx).text == compose.render(TEMPLATES, "info_ack", "fr", ctx).text


def test_real_settings_object_renders_every_kind():
    """The templates read only attributes the real Settings has, from its default templates_dir."""
    from gateway.config import Settings

    settings = Settings()
    assert Path(settings.templates_dir).resolve() == Path(TEMPLATES)
    for kind, ctxs in contexts().items():
        for ctx in ctxs:
            for lang in LANGS:
                r = compose.render(settings.templates_dir, kind, lang, {**ctx, "settings": settings})
                assert r.subject and r.text.strip() and settings.support.name in r.html


@pytest.mark.parametrize("lang", LANGS)
def test_sparse_values_render_cleanly(lang):
    """Missing names, an unnamed attachment, no product, no subject: nothing prints 'None'."""
    case = make_case(module=None)
    case.licence.product = ""
    case.main_contact = contact("", "solo@durand.example")
    case.distribution = []
    anonymous = NS(address=None, name="")
    unnamed = [MailFile(1, "", 0, True, False, "file1@editeur.example")]
    checks = [
        ("case_opened", {**base_context(case), "not_added": [], "priority_wanted": False, "priority": None,
                         "details": "", "attachments": unnamed, "licence": case.licence, "author": anonymous}),
        ("case_message", {**base_context(case), "author": anonymous, "text": "", "attachments": unnamed,
                          "reopened": False}),
        ("agent_message", {**base_context(case), "agent_name": "", "text": "OK", "attachments": unnamed,
                           "status_changed": True}),
        ("sales_alert", {**base_context(None), "licence": case.licence, "client": case.client, "sender": anonymous,
                         "subject": None, "date": dt.datetime(2024, 1, 2, 3, 4), "request": "unknown"}),
        ("refusal", {**base_context(None), "problems": [problem("case_not_found"), problem("needs_case"),
                                                         problem("not_available"), problem("unknown_module",
                                                                                           module="X", modules=[])],
                     "request": NS(title="", fields={}), "original_subject": "", "sender": anonymous,
                     "example": EXAMPLE}),
        ("licence_inactive", {**base_context(None), "licence": case.licence, "problems": [], "request": None,
                              "original_subject": "", "sender": anonymous}),
        ("agent_info_request", {**base_context(None), "author": anonymous, "text": "", "attachments": unnamed}),
        ("case_closed", {**base_context(case), "closed_by": "customer", "author_name": "", "text": "",
                         "attachments": unnamed}),
    ]
    for kind, ctx in checks:
        r = compose.render(TEMPLATES, kind, lang, ctx)
        assert r.subject and "\n" not in r.subject
        assert "None" not in r.text and "None" not in r.html, kind
