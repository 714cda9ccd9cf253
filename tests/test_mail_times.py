"""Times in mails are local to `[jobs] timezone` (Europe/Paris).

Messages go through the real pipeline (test_rules.deliver); what is checked is the mail
queued for its reader.
"""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace as NS

import pytest
from harness import ADV, CLAIRE, OLIVER, PAUL, mail
from test_rules import deliver, sent_to

from gateway import refdata
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
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def northwind(loaded):  # noqa: ANN001, ANN201
    with session_scope(loaded) as session:
        refdata.import_data(session, refdata.load_file(NORTHWIND))
    return loaded


CUSTOMERS = {
    "fr": NS(address=CLAIRE, colleague=PAUL, follow="SUIVI", priority="PRIORITE", distribution="DIFFUSION",
             open="[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"),
    "en": NS(address=OLIVER, colleague=EMMA, follow="STATUS", priority="PRIORITY", distribution="CC",
             open="[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY high] Ledger export fails"),
}


def _ok(engine, settings, sender, subject, body="Bonjour,\n\nVoici.\n", now=None):  # noqa: ANN001, ANN201
    outcome, reasons, case = deliver(engine, settings, mail(sender, subject, body), now=now)
    assert outcome in ("created", "appended"), reasons
    return case


def _last(engine, address, kind):  # noqa: ANN001, ANN201
    """(text, html) of the last mail of `kind` queued for `address`."""
    [*_, (_kind, _subject, text, message)] = [m for m in sent_to(engine, address) if m[0] == kind]
    return text, message.html


@pytest.mark.parametrize("lang, when", [("fr", "01/07/2026 12:00"), ("en", "1 Jul 2026 12:00")])
def test_the_follow_up_list_shows_the_last_action_in_local_summer_time(northwind, settings, lang, when) -> None:  # noqa: ANN001
    who = CUSTOMERS[lang]
    _ok(northwind, settings, who.address, who.open, now=SUMMER)
    _ok(northwind, settings, who.address, f"[{who.follow}]", "", SUMMER + HOUR)
    for rendered in _last(northwind, who.address, "follow_list"):
        assert when in rendered and ("heure de Paris" if lang == "fr" else "Paris time") in rendered
        assert "10:00" not in rendered


def test_the_sales_alert_gives_the_local_winter_time(loaded, settings) -> None:  # noqa: ANN001
    subject = "[CLIENT C10042] [SERIE SN-1B22-0042] [CRITICITE 2] Bulletins de paie"
    assert deliver(loaded, settings, mail(CLAIRE, subject), now=WINTER)[0] == "refused"
    text, html = _last(loaded, ADV, "sales_alert")
    assert "01/12/2026 11:00 (heure de Paris)" in text and "01/12/2026 11:00 (heure de Paris)" in html
    assert "10:00" not in text and "UTC" not in text
