"""The self-service templates ([SUIVI], [DIFFUSION], [INSCRIPTION], [INTERLOCUTEUR]) and their
problem codes: every kind renders in French and English from a realistic context.

Contexts are plain objects shaped like what gateway/pipeline/follow.py, distribution.py,
registration.py and contacts.py post (no database): the templates only read attributes.
"""
from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace as NS

import pytest
from test_templates import LANGS, TEMPLATES, XSS, XSS_ESCAPED, assert_well_rendered

from gateway.outbound import compose

AT = dt.datetime(2026, 11, 28, 10, 2)

SETTINGS = NS(
    support=NS(address="assistance@editeur.example", name="Éditeur Logiciels", case_tag="Dossier",
               language="fr"),
    sales_admin=NS(address="adv@editeur.example", phone="+33 1 23 45 67 89"),
    cases=NS(reopen_days=7, resolved_autoclose_days=7),
    jobs=NS(timezone="Europe/Paris"),
)

EVENT_KINDS = ("opened", "customer_message", "agent_message", "info_request", "status_change", "priority",
               "distribution_change", "reminder", "escalation", "closed", "reopened")

NEW_PROBLEM_CODES = {
    "follow_unknown_sender": {},
    "distribution_empty": {},
    "registration_bad_code": {},
    "contact_not_allowed": {},
    "contact_bad_action": {"value": "effacer"},
    "contact_missing_email": {},
    "contact_bad_email": {"email": "jean.dupont@"},
    "contact_exists": {"email": "paul.martin@durand.example"},
    "contact_unknown": {"email": "inconnu@durand.example"},
    "already_closed": {},
    "list_not_allowed": {"command": "contacts"},
}


def problem(code: str, **params) -> NS:
    return NS(code=code, params=params)


def person(name: str, email: str, phone: str = "") -> NS:
    return NS(name=name, email=email, phone=phone)


MAIN = person("Marie Durand", "marie.durand@durand.example", "01 23 45 67 89")
PAUL = person("Paul Martin", "paul.martin@durand.example")
CLIENT = NS(code="C10042", name="Durand & Fils")


def make_case(title: str = "Impossible d'éditer le grand livre", status: str = "attente_client",
              module: str | None = "Comptabilité", priority: bool = True) -> NS:
    licence = NS(serial="SN-7F3A-2291", product="Compta Pro", modules=["Comptabilité"], client=CLIENT)
    return NS(id=4711, title=title, status=status, criticality=2, priority=priority, module=module,
              licence=licence, client=CLIENT, main_contact=MAIN,
              distribution=[NS(contact=MAIN), NS(contact=PAUL), NS(contact=person("", "compta@durand.example"))])


def case_subject(case: NS) -> str:
    return compose.clean_header(f"[{SETTINGS.support.case_tag} #{case.id}] {case.title}")


OWN_EXAMPLE = NS(code="C10042", serial="SN-7F3A-2291")  # the reader's own code and serial


def base(case: NS | None = None) -> dict:
    return {"case": case, "case_subject": case_subject(case) if case else "", "settings": SETTINGS}


def line(number: int, title: str, status: str = "en_cours", criticality: int = 3, priority: bool = False,
         last_action: str = "agent_message", product: str = "Compta Pro", module: str | None = "Comptabilité",
         main_contact: str = "Marie Durand") -> NS:
    """A CaseLine of gateway/rules/follow.py."""
    return NS(number=number, title=title, status=status, criticality=criticality, priority=priority,
              last_action=last_action, last_action_at=AT, product=product, module=module,
              main_contact=main_contact)


def event(kind: str, author: str, text: str, minutes: int = 0) -> NS:
    """A CaseEvent as follow_case receives it (never internal)."""
    return NS(kind=kind, author=author, at=AT + dt.timedelta(minutes=minutes), text=text, internal=False)


def change(sign: str, address: str, done: bool, reason: str) -> NS:
    """A Change of gateway/pipeline/distribution.py."""
    return NS(sign=sign, address=address, done=done, reason=reason)


def licences(evil: str = "") -> list[NS]:
    """LicenceLines of gateway/portfolio.py: an active one with an end date, an inactive one."""
    return [NS(serial="SN-7F3A-2291", product="Compta Pro" + evil, modules=("Comptabilité", "Paie"), active=True,
               ends_on=dt.date(2027, 12, 31)),
            NS(serial="SN-1B22-0042", product="", modules=(), active=False, ends_on=None)]


LONG = "Le journal complet :\n" + "ligne de journal très bavarde " * 40 + "FIN-DU-TEXTE"


def contexts(evil: str = "") -> dict[str, list[dict]]:
    """kind -> contexts to render it with; `evil` is appended to every piece of user text."""
    title = "Impossible d'éditer le grand livre" + evil
    case = make_case(title=title)
    open_lines = [line(4712, "Lenteurs à la clôture" + evil, "attente_client", 1, True, "agent_message"),
                  line(98, "Export FEC" + evil, "en_cours", 3, False, "customer_message"),
                  line(7, "Installation du poste 3" + evil, "nouveau", 2, False, "opened")]
    closed_lines = [line(3, "Ancien problème d'impression" + evil, "clos", 4, False, "closed")]
    every_kind = [line(100 + i, f"Dossier {i}" + evil, "en_cours", 2, i % 2 == 0, kind)
                  for i, kind in enumerate(EVENT_KINDS)]
    timeline = [
        {"event": event("opened", MAIN.email, "Bonjour,\n\nLe grand livre ne s'édite plus." + evil), "attachments":
            ["capture écran.png", "journal" + evil + ".log"]},
        {"event": event("agent_message", "jean.support@editeur.example", "Pouvez-vous envoyer le journal ?" + evil, 5),
         "attachments": []},
        {"event": event("status_change", "jean.support@editeur.example", "en_cours -> attente_client", 6),
         "attachments": []},
        {"event": event("customer_message", PAUL.email, LONG + evil, 30), "attachments": ["journal.txt"]},
        {"event": event("priority", MAIN.email, "priority granted, 2 point(s) left", 31), "attachments": []},
        {"event": event("distribution_change", MAIN.email, "+compta@durand.example", 32), "attachments": []},
        {"event": event("reminder", "", "", 40), "attachments": []},
        {"event": event("escalation", "", "", 41), "attachments": []},
        {"event": event("info_request", MAIN.email, "Quel est le délai ?" + evil, 42), "attachments": []},
        {"event": event("closed", MAIN.email, "closed by " + MAIN.email, 50), "attachments": []},
        {"event": event("reopened", MAIN.email, "reopened by " + MAIN.email, 60), "attachments": []},
    ]
    changes = [change("+", "compta@durand.example", True, "added"),
               change("-", "ancien@durand.example", True, "removed"),
               change("+", "inconnu@ailleurs.example", False, "not_a_contact"),
               change("-", MAIN.email, False, "main_contact"),
               change("+", MAIN.email, False, "already"),
               change("+", PAUL.email, False, "already"),
               change("-", "absent@durand.example", False, "not_listed"),
               change("+", "pas-une-adresse" + evil, False, "invalid")]
    author = NS(name="Paul Martin" + evil, address=PAUL.email)
    contact = person("Jean Dupont" + evil, "jean.dupont@durand.example", "01 98 76 54 32")
    requester = person("Marie Durand" + evil, MAIN.email)
    client = NS(code="C10042", name="Durand & Fils" + evil)
    return {
        "follow_list": [
            {**base(), "scope": "OPEN", "sections": {"open": (open_lines, 57)}, "limit": 3},
            {**base(), "scope": "CLOS", "sections": {"closed": (closed_lines, 1)}, "limit": 50},
            {**base(), "scope": "CLOSED", "sections": {"closed": ([], 0)}, "limit": 50},
            {**base(), "scope": "TOUS", "sections": {"open": ([], 0), "closed": (closed_lines, 1)}, "limit": 50},
            {**base(), "scope": "ALL", "sections": {"open": (every_kind, 11), "closed": ([], 0)}, "limit": 50},
        ],
        "follow_case": [
            {**base(case), "timeline": timeline, "limit": 30},
            {**base(case), "timeline": timeline[:2], "limit": 2},
            {**base(make_case(title=title, module=None, priority=False, status="clos")), "timeline": [], "limit": 30},
        ],
        "distribution_changed": [
            {**base(case), "changes": changes, "author": author},
            {**base(case), "changes": [change("+", "inconnu@ailleurs.example" + evil, False, "not_a_contact")],
             "author": author},
            {**base(case), "changes": [change("+", "compta@durand.example", True, "added")], "author": author},
        ],
        "distribution_added": [{**base(case), "author": author},
                               {**base(make_case(title=title, module=None)), "author": author}],
        "distribution_removed": [{**base(case), "author": author}],
        "registration_received": [
            {**base(), "client_code": "C10042" + evil, "serial": "SN-7F3A-2291", "name": "Julie Noël"},
            {**base(), "client_code": "C99999", "serial": "" + evil, "name": ""},
        ],
        "registration_code": [{**base(), "code": "042917", "client": client, "hours": 48}],
        "registration_done": [{**base(), "client": client, "example": OWN_EXAMPLE},
                              {**base(), "client": client, "licences": licences(evil), "example": OWN_EXAMPLE}],
        "licence_list": [
            {**base(), "holdings": [NS(code="C10042", name="Durand & Fils" + evil, lines=licences(evil), total=3)],
             "limit": 2},
            {**base(), "holdings": [NS(code="C10042", name="Durand & Fils" + evil, lines=[], total=0)], "limit": 200},
        ],
        "contact_list": [
            {**base(), "holdings": [NS(code="C10042", name="Durand & Fils" + evil, total=4, lines=[
                NS(name="Marie Durand" + evil, email=MAIN.email, phone="01 23 45 67 89", state="active",
                   cases=(4711, 98), more_cases=3),
                NS(name="", email="jean.dupont@durand.example", phone="", state="pending", cases=(), more_cases=0),
                NS(name="Paul Martin", email=PAUL.email, phone="", state="failing", cases=(), more_cases=0)])],
             "limit": 3},
        ],
        "contact_joined": [{**base(), "contact": contact, "client": client, "how": "registration"}],
        "contact_added": [{**base(), "contact": contact, "requester": requester, "client": client, "action": a,
                           "licences": licences(evil)} for a in ("add", "update")],
        "contact_result": [{**base(), "contact": contact, "requester": requester, "client": client, "action": a}
                           for a in ("add", "update")]
        + [{**base(), "contact": requester, "requester": requester, "client": client, "action": "update"}],
    }


KINDS = sorted(contexts())
WITHOUT_USER_TEXT = {("follow_list", 2)}  # an empty section: nothing the sender wrote is shown
CASES = [(kind, lang, i) for kind in KINDS for lang in LANGS for i in range(len(contexts()[kind]))]


def render(kind: str, lang: str, ctx: dict) -> compose.Rendered:
    return compose.render(TEMPLATES, kind, lang, ctx)


@pytest.mark.parametrize("kind,lang,index", CASES)
def test_renders(kind, lang, index):
    ctx = contexts()[kind][index]
    r = render(kind, lang, ctx)
    assert_well_rendered(r, ctx)
    assert SETTINGS.support.name in r.text


@pytest.mark.parametrize("kind,lang,index", CASES)
def test_user_text_is_escaped_in_html(kind, lang, index):
    ctx = contexts(evil=XSS)[kind][index]
    r = render(kind, lang, ctx)
    assert XSS not in r.html
    assert "<script" not in r.html
    if (kind, index) not in WITHOUT_USER_TEXT:
        assert XSS_ESCAPED in r.html
    assert "&lt;" not in r.text
    assert "\n" not in r.subject


@pytest.mark.parametrize("lang", LANGS)
def test_unknown_language_falls_back_to_french(lang):
    for kind, ctxs in contexts().items():
        assert render(kind, "de", ctxs[0]).text == render(kind, "fr", ctxs[0]).text


def test_real_settings_object_renders_every_kind():
    from gateway.config import Settings

    settings = Settings()
    for kind, ctxs in contexts().items():
        for ctx in ctxs:
            for lang in LANGS:
                r = compose.render(settings.templates_dir, kind, lang, {**ctx, "settings": settings})
                assert r.subject and r.text.strip() and settings.support.name in r.html


# --- [SUIVI]: the list ------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_follow_list_says_how_many_are_not_shown(lang):
    r = render("follow_list", lang, contexts()["follow_list"][0])  # 3 lines shown of 57
    for rendered in (r.text, r.html):
        assert "54" in rendered
        assert ("[SUIVI #" if lang == "fr" else "[STATUS #") in rendered
    assert ("54 autres dossiers non affichés" if lang == "fr" else "54 more cases not shown") in r.text
    assert "57" in r.text  # the section's total
    one_more = {**base(), "scope": "OPEN", "sections": {"open": ([line(1, "Seul")], 2)}, "limit": 1}
    text = render("follow_list", lang, one_more).text
    assert ("1 autre dossier non affiché" if lang == "fr" else "1 more case not shown") in text


@pytest.mark.parametrize("lang", LANGS)
def test_follow_list_without_hidden_cases_does_not_mention_any(lang):
    r = render("follow_list", lang, contexts()["follow_list"][1])
    assert "non affiché" not in r.text and "not shown" not in r.text


@pytest.mark.parametrize("lang", LANGS)
def test_follow_list_empty_sections(lang):
    ctx = {**base(), "scope": "TOUS", "sections": {"open": ([], 0), "closed": ([], 0)}, "limit": 50}
    r = render("follow_list", lang, ctx)
    expected = ("Aucun dossier ouvert.", "Aucun dossier clos.") if lang == "fr" else ("No open cases.", "No closed cases.")
    for sentence in expected:
        assert sentence in r.text and sentence in r.html
    only_closed = render("follow_list", lang, contexts()["follow_list"][2])
    assert expected[1] in only_closed.text and expected[0] not in only_closed.text


@pytest.mark.parametrize("lang", LANGS)
def test_follow_list_sections_have_headings_and_scope_subjects(lang):
    ctxs = contexts()["follow_list"]
    subjects = {render("follow_list", lang, ctx).subject for ctx in ctxs}
    assert len(subjects) == 3  # open, closed, all (CLOS/CLOSED and TOUS/ALL are the same)
    r = render("follow_list", lang, ctxs[3])
    heads = ("Dossiers ouverts", "Dossiers clos") if lang == "fr" else ("Open cases", "Closed cases")
    assert r.text.index(heads[0]) < r.text.index(heads[1])
    assert r.html.index(heads[0]) < r.html.index(heads[1])
    assert "<table" in r.html and "<th" in r.html


@pytest.mark.parametrize("lang", LANGS)
def test_follow_list_one_aligned_line_per_case(lang):
    r = render("follow_list", lang, contexts()["follow_list"][0])
    rows = [row for row in r.text.splitlines() if re.match(r"  #\d+ ", row)]
    assert [re.match(r"  #(\d+)", row).group(1) for row in rows] == ["4712", "98", "7"]  # newest first
    # Columns line up: status, criticality and priority start at the same place on every line.
    assert len({row.index("[") for row in rows}) == 1
    first = rows[0]
    words = ("en attente de votre réponse", "bloquante", "★ priorité", "réponse du support") if lang == "fr" else \
        ("waiting for your answer", "blocking", "★ priority", "reply from support")
    for word in words:
        assert word in first
    # AT is 10:02 UTC: 11:02 in Paris in November.
    assert ("28/11/2026 11:02" if lang == "fr" else "28 Nov 2026 11:02") in first
    assert "Lenteurs à la clôture" in first
    crit = {"fr": ("bloquante", "normale", "haute"), "en": ("blocking", "normal", "high")}[lang]
    assert len({row.index(word) for row, word in zip(rows, crit)}) == 1
    assert "★" not in rows[1] and "★" not in rows[2]


@pytest.mark.parametrize("lang", LANGS)
def test_follow_list_puts_every_event_kind_in_words(lang):
    r = render("follow_list", lang, contexts()["follow_list"][4])
    rows = [row for row in r.text.splitlines() if re.match(r"  #\d+ ", row)]
    assert len(rows) == len(EVENT_KINDS)
    phrases = set()
    for row, kind in zip(rows, EVENT_KINDS):
        phrase = row.split(" : " if lang == "fr" else ": ", 1)[1].rsplit(",", 1)[0]
        assert "_" not in phrase and phrase.strip(), row
        assert kind not in phrase or lang == "en", row  # English words may coincide ("closed")
        phrases.add(phrase)
    assert len(phrases) == len(EVENT_KINDS)
    for kind in EVENT_KINDS:
        if "_" in kind:
            assert kind not in r.html


@pytest.mark.parametrize("lang", LANGS)
def test_follow_list_long_title_is_shortened_in_text_only(lang):
    long_title = "Très long titre " * 10 + "FIN"
    ctx = {**base(), "scope": "OPEN", "sections": {"open": ([line(5, long_title)], 1)}, "limit": 50}
    r = render("follow_list", lang, ctx)
    assert "FIN" not in r.text and "…" in r.text
    assert long_title in r.html


@pytest.mark.parametrize("lang", LANGS)
def test_follow_list_explains_the_other_requests(lang):
    r = render("follow_list", lang, contexts()["follow_list"][0])
    tags = ("[SUIVI #4712]", "[SUIVI]", "[SUIVI CLOS]", "[SUIVI TOUS]") if lang == "fr" else \
        ("[STATUS #4712]", "[STATUS]", "[STATUS CLOSED]", "[STATUS ALL]")
    for tag in tags:
        assert tag in r.text and tag in r.html


# --- [SUIVI #N]: one case -----------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_follow_case_summary_and_timeline(lang):
    ctx = contexts()["follow_case"][0]
    r = render("follow_case", lang, ctx)
    for fact in ("4711", "Impossible d'éditer le grand livre", "Durand & Fils", "SN-7F3A-2291", "Comptabilité",
                 "Marie Durand <marie.durand@durand.example>", "Paul Martin <paul.martin@durand.example>",
                 "compta@durand.example", "capture écran.png", "journal.log", "journal.txt",
                 "jean.support@editeur.example", "Pouvez-vous envoyer le journal ?"):
        assert fact in r.text, fact
    # The events' times are Paris time (AT is 10:02 UTC), said once.
    times = ("28/11/2026 11:02", "28/11/2026 11:07", "heure de Paris") if lang == "fr" else \
        ("28 Nov 2026 11:02", "28 Nov 2026 11:07", "Paris time")
    for fact in times:
        assert fact in r.text and fact in r.html, fact
    words = {"fr": ("en attente de votre réponse", "haute", "ouverture du dossier", "réponse du support",
                    "en cours → en attente de votre réponse", "relance", "clôture", "réouverture"),
             "en": ("waiting for your answer", "high", "case opened", "reply from support",
                    "in progress → waiting for your answer", "reminder", "closed", "reopened")}[lang]
    for word in words:
        assert word in r.text, word
    # Oldest first, as given.
    assert r.text.index("Pouvez-vous envoyer") < r.text.index("Le journal complet") < r.text.index("Quel est le délai")
    # Bookkeeping texts of the gateway are not shown raw; the kinds are in words.
    for raw in ("en_cours -> attente_client", "priority granted, 2", "closed by marie", "reopened by marie",
                "customer_message", "status_change", "distribution_change"):
        assert raw not in r.text and raw not in r.html, raw


@pytest.mark.parametrize("lang", LANGS)
def test_follow_case_long_text_shortened_in_text_full_in_html(lang):
    r = render("follow_case", lang, contexts()["follow_case"][0])
    assert "FIN-DU-TEXTE" not in r.text and "[…]" in r.text
    assert "FIN-DU-TEXTE" in r.html
    assert "white-space:pre-wrap" in r.html
    shown = r.text[r.text.index("Le journal complet"):r.text.index("[…]")]
    assert len(re.sub(r"\s+", " ", shown)) <= 500


@pytest.mark.parametrize("lang", LANGS)
def test_follow_case_says_when_the_timeline_is_limited(lang):
    limited = render("follow_case", lang, contexts()["follow_case"][1]).text
    whole = render("follow_case", lang, {**contexts()["follow_case"][1], "limit": 30}).text
    assert ("2 derniers événements" if lang == "fr" else "last 2 events") in limited
    assert ("derniers événements" if lang == "fr" else "last 2 events") not in whole
    empty = render("follow_case", lang, contexts()["follow_case"][2])
    assert ("aucun événement" if lang == "fr" else "no events") in empty.text


# --- [DIFFUSION] ---------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_distribution_changed_lists_done_refused_and_current(lang):
    ctx = contexts()["distribution_changed"][0]
    r = render("distribution_changed", lang, ctx)
    text = " ".join(r.text.split())
    assert "Paul Martin <paul.martin@durand.example>" in text
    for address in ("compta@durand.example", "ancien@durand.example", "inconnu@ailleurs.example",
                    "absent@durand.example", "pas-une-adresse"):
        assert address in text
    reasons = {"fr": ("ajoutée à la liste", "retirée de la liste", "seuls les interlocuteurs actifs",
                      "qui ne peut pas en être retiré", "qui reçoit déjà tous les échanges",
                      "figure déjà dans la liste", "ne figure pas dans la liste", "pas une adresse e-mail valide",
                      "[INTERLOCUTEUR AJOUT]", "[DIFFUSION +adresse -adresse]"),
               "en": ("added to the list", "removed from the list", "only active contacts can be added",
                      "who cannot be removed", "already receives every message", "already on the distribution list",
                      "not on the distribution list", "not a valid email address", "[CONTACT ADD]",
                      "[CC +address -address]")}[lang]
    for reason in reasons:
        assert reason in text, reason
        assert reason in " ".join(re.sub(r"<[^>]+>", "", r.html).split()), reason
    # The current list: the main contact, then the others.
    current = text[text.index("Contact principal" if lang == "fr" else "Main contact:"):]
    assert "Marie Durand <marie.durand@durand.example>" in current
    assert "Paul Martin <paul.martin@durand.example>" in current and "compta@durand.example" in current


@pytest.mark.parametrize("lang", LANGS)
def test_distribution_changed_nothing_done(lang):
    r = render("distribution_changed", lang, contexts()["distribution_changed"][1])
    assert ("Aucune modification" if lang == "fr" else "No change was made") in r.text
    assert ("Demande non effectuée" if lang == "fr" else "Request not carried out") in r.text


# --- [INSCRIPTION] -------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_registration_answer_is_neutral(lang):
    """The answer depends only on what the sender wrote: two codes give the same message once
    the echoed code is taken out, and nothing says whether the code or serial exist."""
    def answer(code: str, serial: str) -> compose.Rendered:
        return render("registration_received", lang, {**base(), "client_code": code, "serial": serial, "name": "Julie Noël"})

    # Values distinct from the example subject the answer shows.
    known, unknown = answer("C20077", "SN-1111-2222"), answer("C99999", "SN-1111-2222")
    assert known.subject == unknown.subject
    assert "C20077" not in known.subject and "SN-1111" not in known.subject
    assert known.text.replace("C20077", "C99999") == unknown.text
    assert known.html.replace("C20077", "C99999") == unknown.html
    other_serial = answer("C20077", "SN-0000-0000")
    assert known.text.replace("SN-1111-2222", "SN-0000-0000") == other_serial.text
    assert known.html.replace("SN-1111-2222", "SN-0000-0000") == other_serial.html
    lowered = (known.text + known.html).lower()
    for word in ("inconnu", "n'existe", "invalide", "unknown", "does not exist", "invalid", "not found",
                 "introuvable", "incorrect"):
        assert word not in lowered, word
    sentence = ("recevrez dans quelques minutes" if lang == "fr" else "within a few minutes")
    assert sentence in " ".join(known.text.split())
    empty = answer("", "")
    assert ("(non indiqué)" if lang == "fr" else "(not given)") in empty.text


@pytest.mark.parametrize("lang", LANGS)
def test_registration_answer_echo_is_bounded(lang):
    r = render("registration_received", lang, {**base(), "client_code": "X" * 5000, "serial": "Y" * 5000, "name": "Z" * 5000})
    assert "X" * 65 not in r.text and "Y" * 65 not in r.text and "Z" * 65 not in r.text


@pytest.mark.parametrize("lang", LANGS)
def test_registration_code_mail(lang):
    r = render("registration_code", lang, contexts()["registration_code"][0])
    assert "042917" in r.subject  # a reply keeps the code in its subject
    text = " ".join(r.text.split())
    for fact in ("042917", "48", "Durand & Fils", "C10042",
                 "[INSCRIPTION 042917]" if lang == "fr" else "[REGISTER 042917]"):
        assert fact in text and fact.replace("&", "&amp;") in r.html, fact


@pytest.mark.parametrize("lang", LANGS)
def test_registration_done_welcomes_and_points_to_the_grammar(lang):
    r = render("registration_done", lang, contexts()["registration_done"][0])
    text = " ".join(r.text.split())
    tags = ("[SUIVI]", "[INTERLOCUTEUR AJOUT]", "[CLIENT C10042]", "[CLOTURE]") if lang == "fr" else \
        ("[STATUS]", "[CONTACT ADD]", "[CUSTOMER C10042]", "[CLOSE]")
    for tag in ("Durand & Fils",) + tags:
        assert tag in text, tag


# --- [INTERLOCUTEUR] -----------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_contact_joined_says_how_to_object(lang):
    r = render("contact_joined", lang, contexts()["contact_joined"][0])
    text = " ".join(r.text.split())
    assert "Jean Dupont <jean.dupont@durand.example>" in text
    assert ("[INTERLOCUTEUR SUPPRESSION]" if lang == "fr" else "[CONTACT REMOVE]") in text
    assert "Jean Dupont" in r.subject


@pytest.mark.parametrize("kind", ("contact_added", "contact_result"))
@pytest.mark.parametrize("lang", LANGS)
def test_contact_mails_show_the_details_and_differ_by_action(kind, lang):
    added, updated = (render(kind, lang, ctx) for ctx in contexts()[kind][:2])
    assert added.subject != updated.subject and added.text != updated.text
    for r in (added, updated):
        for fact in ("Jean Dupont", "jean.dupont@durand.example", "01 98 76 54 32", "Durand & Fils"):
            assert fact in r.text, fact
    if kind == "contact_added":
        assert "Marie Durand <marie.durand@durand.example>" in " ".join(added.text.split())


@pytest.mark.parametrize("lang", LANGS)
def test_contact_result_to_oneself_does_not_claim_a_notice_was_sent(lang):
    others, oneself = (render("contact_result", lang, ctx).text for ctx in contexts()["contact_result"][1:])
    notice = "Nous lui avons envoyé" if lang == "fr" else "We have sent them"
    assert notice in others and notice not in oneself


@pytest.mark.parametrize("lang", LANGS)
def test_contact_sparse_values_render_cleanly(lang):
    contact = person("", "solo@durand.example", "")
    ctx = {**base(), "contact": contact, "requester": person("", "marie.durand@durand.example"),
           "client": CLIENT, "action": "add", "how": "registration"}
    for kind in ("contact_added", "contact_result", "contact_joined"):
        r = render(kind, lang, ctx)
        assert r.subject and "\n" not in r.subject and "solo@durand.example" in r.text
        assert "None" not in r.text and "None" not in r.html


# --- Problem codes -------------------------------------------------------------------------

def _explainers(lang: str):
    out = []
    for autoescape, ext in ((False, "txt"), (True, "html")):
        env = compose.environment(TEMPLATES, autoescape)
        module = env.get_template(f"{lang}/_problems.{ext}").make_module({"settings": SETTINGS, "lang": lang})
        out.append(module.explain)
    return out


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("code", sorted(NEW_PROBLEM_CODES))
def test_every_new_problem_code_is_explained(lang, code):
    for explain in _explainers(lang):
        fallback = str(explain(problem("__unknown__"))).strip()
        assert "__unknown__" in fallback
        sentence = str(explain(problem(code, **NEW_PROBLEM_CODES[code]))).strip()
        assert sentence
        assert sentence != fallback.replace("__unknown__", code)
        assert code not in sentence
        # Without its parameters too (a template never fails on a sparse problem).
        assert str(explain(problem(code))).strip()


@pytest.mark.parametrize("lang", LANGS)
def test_new_problem_explanations_mention_their_values_and_examples(lang):
    explain_text, explain_html = _explainers(lang)

    def text(code, **kw):
        return " ".join(str(explain_text(problem(code, **kw))).replace("\u00a0", " ").split())

    assert "effacer" in text("contact_bad_action", value="effacer")
    assert "jean.dupont@" in text("contact_bad_email", email="jean.dupont@")
    assert "paul@x.fr" in text("contact_exists", email="paul@x.fr")
    assert "paul@x.fr" in text("contact_unknown", email="paul@x.fr")
    assert "7" in text("already_closed")
    if lang == "fr":
        assert "[DIFFUSION +paul@exemple.fr -anne@exemple.fr]" in text("distribution_empty")
        assert "[INSCRIPTION]" in text("follow_unknown_sender")
        assert "[INSCRIPTION]" in text("registration_bad_code")
        for tag in ("[INTERLOCUTEUR AJOUT]", "[INTERLOCUTEUR MODIF]", "[INTERLOCUTEUR SUPPRESSION]"):
            assert tag in text("contact_bad_action", value="x")
        missing = str(explain_text(problem("contact_missing_email"))).replace("\u00a0", " ")
        for example_line in ("Nom : Jean Dupont", "Email : jean.dupont@exemple.fr", "Téléphone : 01 23 45 67 89"):
            assert re.search(rf"^\s+{re.escape(example_line)}$", missing, re.M), example_line
    else:
        assert "[CC +paul@example.com -anne@example.com]" in text("distribution_empty")
        assert "[REGISTER]" in text("follow_unknown_sender")
        assert "[REGISTER]" in text("registration_bad_code")
        for tag in ("[CONTACT ADD]", "[CONTACT UPDATE]", "[CONTACT REMOVE]"):
            assert tag in text("contact_bad_action", value="x")
        missing = str(explain_text(problem("contact_missing_email")))
        for example_line in ("Name: John Smith", "Email: john.smith@example.com"):
            assert re.search(rf"^\s+{re.escape(example_line)}$", missing, re.M), example_line
    # The HTML version escapes what the sender wrote.
    assert XSS not in str(explain_html(problem("contact_bad_email", email=XSS)))
    assert XSS_ESCAPED in str(explain_html(problem("contact_bad_action", value=XSS)))


@pytest.mark.parametrize("lang", LANGS)
def test_refusal_renders_every_new_problem_code(lang):
    problems = [problem(code, **params) for code, params in NEW_PROBLEM_CODES.items()]
    ctx = {**base(), "problems": problems, "request": NS(title="", fields={}), "original_subject": "[SUIVI]",
           "sender": NS(address="x@ailleurs.example", name=""), "example": NS(code="C00000", serial="SN-0000-0000")}
    r = render("refusal", lang, ctx)
    assert_well_rendered(r, ctx)
    fallback = "motif :" if lang == "fr" else "reason:"
    assert fallback not in r.text
    for line_ in r.text.splitlines():
        assert not line_.lstrip().startswith((":", ";")), line_
    case = make_case(status="clos")
    closed = render("refusal", lang, {**ctx, **base(case), "problems": [problem("already_closed")]})
    assert closed.subject == case_subject(case)
