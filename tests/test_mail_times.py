"""Times in mails are local to `[jobs] timezone` (Europe/Paris), and the timeline a customer
reads is in their language, with nothing of the gateway's own bookkeeping in English.

Messages go through the real pipeline (test_rules.deliver) and the jobs run as `gateway jobs
run` runs them (test_jobs.job); what is checked is the mail queued for the customer. The last
tests read timeline events directly (gateway/timeline.py) and through the templates.
"""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace as NS

import pytest
from harness import ADV, CLAIRE, MATHILDE, OLIVER, PAUL, agent_mail, mail
from test_jobs import job
from test_rules import deliver, sent_to
from test_templates_selfservice import base, event, make_case, render

from gateway import refdata, timeline
from gateway.db import session_scope

EMMA = "emma.clarke@northwind.example"
# Northwind (C30105, English) gets a privilege contract and a second contact.
NORTHWIND = """
[[contracts]]
client = "C30105"
level = "privilege"
points = 3

[[contacts]]
client = "C30105"
name = "Emma Clarke"
email = "emma.clarke@northwind.example"
"""
WINTER = dt.datetime(2026, 12, 1, 10, 0)   # 11:00 in Paris
SUMMER = dt.datetime(2026, 7, 1, 10, 0)    # 12:00 in Paris
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


@pytest.fixture
def northwind(loaded):
    with session_scope(loaded) as session:
        refdata.import_data(session, refdata.load_file(NORTHWIND))
    return loaded


CUSTOMERS = {
    "fr": NS(address=CLAIRE, colleague=PAUL, follow="SUIVI", priority="PRIORITE", distribution="DIFFUSION",
             open="[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"),
    "en": NS(address=OLIVER, colleague=EMMA, follow="STATUS", priority="PRIORITY", distribution="CC",
             open="[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY high] Ledger export fails"),
}
# What the gateway's own events read like, in each language.
EXPECTED = {
    "fr": ("01/12/2026 11:00", "heure de Paris", "relance 1 sur 2", "nouveau → en attente de votre réponse",
           "plus aucun point de priorité au contrat", f"ajout de {PAUL}", "en cours → résolu", "réouverture"),
    "en": ("1 Dec 2026 11:00", "Paris time", "reminder 1 of 2", "new → waiting for your answer",
           "2 priority points left on the contract", f"added {EMMA}", "in progress → resolved", "reopened"),
}
# Internal texts and codes (as stored before, or as stored now) and the UTC times.
NEVER = ("reminder 1/2", "1/2 sent", " -> ", "priority granted,", "point(s)", "reopened by", "closed by",
         f"+{PAUL}", f"+{EMMA}", '{"', "attente_client", "en_cours", "status_change", "distribution_change",
         "customer_message", "01/12/2026 10:00", "1 Dec 2026 10:00", "2026-12-01")


def _ok(engine, settings, sender, subject, body="Bonjour,\n\nVoici.\n", now=None, number=None):
    msg = agent_mail(engine, settings, sender, number, subject, body) if number else mail(sender, subject, body)
    outcome, reasons, case = deliver(engine, settings, msg, now=now)
    assert outcome in ("created", "appended"), reasons
    return case


def _last(engine, address, kind):
    """(text, html) of the last mail of `kind` queued for `address`."""
    [*_, (_kind, _subject, text, message)] = [m for m in sent_to(engine, address) if m[0] == kind]
    return text, message.html


@pytest.mark.parametrize("lang", ("fr", "en"))
def test_a_case_timeline_is_in_the_customers_language_and_local_time(northwind, settings, lang) -> None:
    who = CUSTOMERS[lang]
    number = _ok(northwind, settings, who.address, who.open, now=WINTER)
    case = f"[Dossier #{number}]"
    _ok(northwind, settings, MATHILDE, f"[ATTENTE] {case} suivi", "Pouvez-vous envoyer le journal ?", WINTER + HOUR,
        number=number)
    assert job("reminders", settings, northwind, WINTER + 5 * DAY) == {"reminder": 1}
    _ok(northwind, settings, who.address, f"[{who.priority}] {case} urgent", "Le journal est joint.",
        WINTER + 5 * DAY + HOUR)
    _ok(northwind, settings, who.address, f"[{who.distribution} +{who.colleague}] {case}", "", WINTER + 5 * DAY + 2 * HOUR)
    _ok(northwind, settings, MATHILDE, f"[RESOLU] {case} corrigé", "C'est corrigé.", WINTER + 6 * DAY, number=number)
    _ok(northwind, settings, who.address, f"RE: {case} corrigé", "Toujours en erreur.", WINTER + 6 * DAY + HOUR)
    _ok(northwind, settings, who.address, f"[{who.follow} #{number}]", "", WINTER + 6 * DAY + 2 * HOUR)

    for rendered in _last(northwind, who.address, "follow_case"):
        flat = " ".join(rendered.split())
        for phrase in EXPECTED[lang]:
            assert phrase.lower() in flat.lower(), phrase  # the HTML capitalises the kinds
        for internal in NEVER:
            assert internal not in flat, internal
        # A person's words are shown as written.
        assert "Toujours en erreur." in flat and "Pouvez-vous envoyer le journal ?" in flat


@pytest.mark.parametrize("lang, when", [("fr", "01/07/2026 12:00"), ("en", "1 Jul 2026 12:00")])
def test_the_follow_up_list_shows_the_last_action_in_local_summer_time(northwind, settings, lang, when) -> None:
    who = CUSTOMERS[lang]
    _ok(northwind, settings, who.address, who.open, now=SUMMER)
    _ok(northwind, settings, who.address, f"[{who.follow}]", "", SUMMER + HOUR)
    for rendered in _last(northwind, who.address, "follow_list"):
        assert when in rendered and ("heure de Paris" if lang == "fr" else "Paris time") in rendered
        assert "10:00" not in rendered


def test_the_sales_alert_gives_the_local_winter_time(loaded, settings) -> None:
    subject = "[CLIENT C10042] [SERIE SN-1B22-0042] [CRITICITE 2] Bulletins de paie"
    assert deliver(loaded, settings, mail(CLAIRE, subject), now=WINTER)[0] == "refused"
    text, html = _last(loaded, ADV, "sales_alert")
    assert "01/12/2026 11:00 (heure de Paris)" in text and "01/12/2026 11:00 (heure de Paris)" in html
    assert "10:00" not in text and "UTC" not in text


# -- the stored form ------------------------------------------------------------------------------

WRITTEN = [  # (kind, what the code stores now, what a database written before holds, description)
    ("status_change", timeline.status_change("en_cours", "resolu"), "en_cours -> resolu",
     ("status", {"from": "en_cours", "to": "resolu"})),
    ("priority", timeline.priority_granted(2), "priority granted, 2 point(s) left", ("priority", {"points_left": 2})),
    ("distribution_change", timeline.distribution_change(["a@x.fr"], ["b@y.fr"]), "+a@x.fr, -b@y.fr",
     ("distribution", {"added": ["a@x.fr"], "removed": ["b@y.fr"]})),
    ("reminder", timeline.reminder(1, 2), "reminder 1/2 sent", ("reminder", {"number": 1, "of": 2})),
    ("escalation", timeline.escalated("lead@x.fr", 8), "escalated to lead@x.fr: no agent answer within 8 h",
     ("escalation", {"lead": "lead@x.fr", "hours": 8})),
    ("closed", timeline.closed_resolved(7), "closed automatically: resolved 7 day(s) ago",
     ("closed_resolved", {"days": 7})),
    ("closed", timeline.closed_no_answer(2), "closed automatically: no answer after 2 reminder(s)",
     ("closed_no_answer", {"reminders": 2})),
    ("opened", timeline.contact_removal("paul@x.fr"), "remove contact paul@x.fr",
     ("remove_contact", {"contact": "paul@x.fr"})),
    ("reopened", "", "reopened by claire@x.fr", ("none", {})),
    ("closed", "", "closed by claire@x.fr", ("none", {})),
]


@pytest.mark.parametrize("kind, stored, legacy, expected", WRITTEN)
def test_the_gateways_events_read_back_from_the_new_and_the_old_form(kind, stored, legacy, expected) -> None:
    for text in (stored, legacy):
        d = timeline.describe(NS(kind=kind, text=text, author="claire@x.fr"))
        assert (d.code, dict(d.params)) == expected, text


@pytest.mark.parametrize("kind, text", [
    ("closed", "Merci, c'est réglé."), ("opened", '{"error": "E42", "line": 7}'), ("customer_message", "{}"),
    ("closed", '{"auto": "resolved", "days": "7"}'), ("customer_message", timeline.reminder(1, 2)),
])
def test_a_persons_words_are_shown_as_written(kind, text) -> None:
    d = timeline.describe(NS(kind=kind, text=text, author="claire@x.fr"))
    assert (d.code, d.params["text"]) == ("text", text)


@pytest.mark.parametrize("text", ["reminder sent twice", '{"number": "1", "of": 2}', "[1, 2]", '{"number": 1'])
def test_an_unreadable_gateway_event_shows_nothing_rather_than_internal_text(text) -> None:
    assert timeline.describe(NS(kind="reminder", text=text, author="")).code == "none"


@pytest.mark.parametrize("lang", ("fr", "en"))
def test_old_and_new_stored_events_read_the_same_in_a_mail(lang) -> None:
    def mail_of(texts: list[tuple[str, str]]) -> tuple[str, str]:
        timeline_ = [{"event": event(kind, "claire@x.fr", text, i), "attachments": []}
                     for i, (kind, text) in enumerate(texts)]
        r = render("follow_case", lang, {**base(make_case()), "timeline": timeline_, "limit": 30})
        return r.text, r.html

    new = mail_of([(kind, stored) for kind, stored, _legacy, _d in WRITTEN])
    old = mail_of([(kind, legacy) for kind, _stored, legacy, _d in WRITTEN])
    assert new == old
    assert ("relance 1 sur 2" if lang == "fr" else "reminder 1 of 2") in new[0]
