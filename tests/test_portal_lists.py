"""The old portal's screens by email: `[LICENCES]` and `[INTERLOCUTEURS]`, the licence expiry
warning, the welcome mails that list the licences, and the registration's name. Real mail
through the SMTP door of a running gateway; what the customer's mailbox gets is read from
the relay stand-in (text and HTML parts, French and English)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from zoneinfo import ZoneInfo

from harness import ADV, CLAIRE, HELENE, OLIVER, PAUL, confirmation_reply, mail, send
from sqlalchemy import select, update

from gateway import workdays
from gateway.db import session_scope, utcnow
from gateway.jobs import runner
from gateway.models import Contact, Licence
from gateway.outbound import send as outbound

STRANGER = "curieux@ailleurs.example"
NEWCOMER = "julie.noel@boulangeries-lefevre.example"
GREEN, RED = "#1a7f37", "#c62828"


def received(relay, address, count=1):
    """The mails `address` got, once there are `count` of them."""
    relay.wait_for(lambda got: sum(r.rcpt == address for r in got) >= count)
    return relay.to(address)


def ask(gateway, relay, sender, subject, body="Merci.\n", **kw):
    """Send `subject` from `sender` and return the mail it got back (text, HTML, subject)."""
    before = len(relay.to(sender))
    send(gateway.settings, mail(sender, subject, body, **kw))
    return received(relay, sender, before + 1)[before]


def phone_cells(html):
    """(colour, word) of each telephone shown in the HTML grid."""
    return re.findall(r'<span style="color:(#[0-9a-f]{6}); font-size:16px;"[^>]*>☎</span>&nbsp;'
                      r'<span style="color:#[0-9a-f]{6}; font-weight:bold;">(\w+)</span>', html)


# -- [LICENCES] ----------------------------------------------------------------------------------

def test_licences_show_the_portal_grid_in_french(gateway, relay, loaded) -> None:
    with session_scope(loaded) as session:
        session.execute(update(Licence).where(Licence.serial == "SN-7F3A-2291").values(ends_on=dt.date(2027, 12, 31)))
    answer = ask(gateway, relay, CLAIRE, "[LICENCES]")
    assert answer.subject == "Vos licences"
    text, html = answer.text(), answer.html()
    assert answer.message["Auto-Submitted"] == "auto-replied"
    for part in (text, html):
        assert "SN-7F3A-2291" in part and "Gestion Commerciale 100" in part and "Ventes, Achats, Comptabilité" in part
        assert "SN-1B22-0042" in part and "Paie RH" in part
        assert "31/12/2027" in part
        # Sales administration is named for the inactive licence: phone and address.
        assert gateway.settings.sales_admin.phone in part and ADV in part
        # Only Claire's company: never another client's licence.
        for other in ("SN-88C1-5530", "Comptabilité 100", "SN-42EE-9001", "C20077", "C30105"):
            assert other not in part
    # The grid: a green telephone for the active licence (first), a red one for the inactive one.
    assert phone_cells(html) == [(GREEN, "active"), (RED, "inactive")]
    inactive_row = html[html.index("SN-1B22-0042"):].split("</tr>")[0]
    assert gateway.settings.sales_admin.phone in inactive_row and ADV in inactive_row
    active_row = html[html.index("SN-7F3A-2291"):].split("</tr>")[0]
    assert ADV not in active_row
    block = text[text.index("SN-1B22-0042"):]
    assert "INACTIVE" in block.split("\n\n")[0] and gateway.settings.sales_admin.phone in block
    # Said once, under the licence it concerns, not repeated below the list.
    assert text.count(gateway.settings.sales_admin.phone) == 1 and html.count(gateway.settings.sales_admin.phone) == 1
    assert "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE 3]" in text  # how to open a case on it


def test_licenses_in_english_for_an_english_contact(gateway, relay) -> None:
    answer = ask(gateway, relay, OLIVER, "[LICENSES]", "Thanks.\n")
    assert answer.subject == "Your licences"
    for part in (answer.text(), answer.html()):
        assert "SN-42EE-9001" in part and "Accounting 100" in part and "no end date" in part
        assert "SN-7F3A-2291" not in part and "Bonjour" not in part
    assert phone_cells(answer.html()) == [(GREEN, "active")]
    assert "[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY 3]" in answer.text()


def test_a_stranger_asking_for_licences_learns_nothing(gateway, relay) -> None:
    answer = ask(gateway, relay, STRANGER, "[LICENCES] [CLIENT C10042]")
    for part in (answer.text(), answer.html()):
        for secret in ("SN-1B22-0042", "Paie RH", "Gestion Commerciale", "Boulangeries", "Lefèvre", "Ventes"):
            assert secret not in part
        assert "interlocuteurs actifs" in part and "facture de maintenance" in part
    assert answer.subject.startswith("Votre demande n'a pas pu être traitée")
    # Asking for another client's code gives the same answer, byte for byte in the text.
    other = ask(gateway, relay, "autre@ailleurs.example", "[LICENCES] [CLIENT C10042]")
    assert other.text() == answer.text()


def test_stranger_answers_respect_the_hourly_ceiling(settings, loaded, relay, free_port) -> None:
    from harness import running, wired
    capped = dataclasses.replace(settings, support=dataclasses.replace(settings.support, stranger_answers_per_hour=1))
    with running(wired(capped, free_port(), relay.controller.port), loaded) as gw:
        ask(gw, relay, STRANGER, "[INTERLOCUTEURS]")
        send(gw.settings, mail("second@ailleurs.example", "[INTERLOCUTEURS]"))
        send(gw.settings, mail(CLAIRE, "[SUIVI]"))  # a contact's answer comes after, so the first was decided
        received(relay, CLAIRE)
    assert relay.to("second@ailleurs.example") == []


# -- [INTERLOCUTEURS] ------------------------------------------------------------------------------

def test_interlocuteurs_show_state_phone_and_cases(gateway, relay, loaded) -> None:
    with session_scope(loaded) as session:
        session.execute(update(Contact).where(Contact.email == CLAIRE).values(phone="+33 4 72 00 11 22"))
        session.execute(update(Contact).where(Contact.email == PAUL).values(failing_since=utcnow()))
    opening = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE 3] Factures impossibles"
    send(gateway.settings, mail(CLAIRE, opening))
    received(relay, CLAIRE)
    send(gateway.settings, mail(HELENE, "[CLIENT C20077] [SERIE SN-88C1-5530] [CRITICITE 3] Secret clinique"))
    received(relay, HELENE)
    send(gateway.settings, mail(NEWCOMER, "[INSCRIPTION] [CLIENT C10042] [SERIE SN-7F3A-2291]",
                                "Nom : Julie Noël\n"))
    received(relay, NEWCOMER, 2)  # the neutral answer and the code: Julie is pending

    answer = ask(gateway, relay, PAUL, "[INTERLOCUTEURS]")
    assert answer.subject == "Vos interlocuteurs"
    text, html = answer.text(), answer.html()
    for part in (text, html):
        for word in ("Claire Martin", CLAIRE, "+33 4 72 00 11 22", "Paul Girard", PAUL, "Julie Noël", NEWCOMER,
                     "#1", "actif", "adresse en échec", "en attente de confirmation"):
            assert word in part, word
        assert "Hélène" not in part and HELENE not in part and not re.search(r"#2\b", part)
    claire = text[text.index("Claire Martin"):].split("\n\n")[0]
    assert "État      : actif" in claire and "Dossiers  : #1" in claire
    paul = text[text.index("Paul Girard"):].split("\n\n")[0]
    assert "adresse en échec" in paul and "aucun dossier ouvert" in paul
    assert f'color:{RED}; font-weight:bold;">adresse en échec' in html


def test_contacts_in_english_and_refused_to_strangers(gateway, relay) -> None:
    answer = ask(gateway, relay, OLIVER, "[CONTACTS]", "Thanks.\n")
    assert answer.subject == "Your contacts"
    for part in (answer.text(), answer.html()):
        assert "Oliver Bennett" in part and OLIVER in part and "active" in part
        assert CLAIRE not in part
    assert "no open case" in answer.text() and ">none</span>" in answer.html()
    refusal = ask(gateway, relay, STRANGER, "[CONTACTS]")
    for part in (refusal.text(), refusal.html()):
        assert "interlocuteurs" in part
        for secret in (CLAIRE, PAUL, OLIVER, "Northwind", "Boulangeries", "Claire", "Oliver"):
            assert secret not in part


def test_the_contact_command_still_adds_a_colleague(gateway, relay, loaded) -> None:
    body = f"Bonjour,\n\nNom : Julie Noël\nEmail : {NEWCOMER}\nTéléphone : 04 72 00 11 33\n"
    send(gateway.settings, mail(CLAIRE, "[INTERLOCUTEUR AJOUT]", body))
    received(relay, CLAIRE)  # the confirmation request
    send(gateway.settings, confirmation_reply(loaded, CLAIRE))
    welcome = received(relay, NEWCOMER)[0]
    assert welcome.subject.startswith("Vous êtes désormais interlocuteur")
    # The welcome lists the company's licences, with the portal's telephones.
    for part in (welcome.text(), welcome.html()):
        assert "SN-7F3A-2291" in part and "SN-1B22-0042" in part and "SN-88C1-5530" not in part
    assert phone_cells(welcome.html()) == [(GREEN, "active"), (RED, "inactive")]
    with session_scope(loaded) as session:
        assert session.scalar(select(Contact.phone).where(Contact.email == NEWCOMER)) == "04 72 00 11 33"


# -- the licence expiry warning ------------------------------------------------------------------

def paris(*args: int) -> dt.datetime:
    """A Paris wall-clock time as naive UTC (the jobs' clock)."""
    return workdays.to_utc(dt.datetime(*args, tzinfo=ZoneInfo("Europe/Paris")))


def ends(engine, serial, day):
    with session_scope(engine) as session:
        session.execute(update(Licence).where(Licence.serial == serial).values(ends_on=day))


def test_contacts_are_warned_once_before_a_licence_ends(loaded, settings, relay, free_port) -> None:
    from harness import wired
    settings = wired(settings, free_port(), relay.controller.port)

    def job(at):
        result = runner.run("expiry-notice", settings, loaded, at)
        assert not result.errors
        outbound.drain(loaded, settings)
        return result.did

    ends(loaded, "SN-7F3A-2291", dt.date(2026, 12, 31))   # Claire and Paul's company
    ends(loaded, "SN-42EE-9001", dt.date(2026, 12, 15))   # Oliver's, in English
    ends(loaded, "SN-88C1-5530", dt.date(2027, 6, 30))    # Hélène's: far away
    assert job(paris(2026, 11, 15, 9, 0)) == {"warned": 1}  # Oliver's, 30 days before
    assert job(paris(2026, 11, 30, 23, 59)) == {}            # Claire's is 31 days away
    assert job(paris(2026, 12, 1, 9, 0)) == {"warned": 1}
    claire, paul = received(relay, CLAIRE)[0], received(relay, PAUL)[0]
    assert claire.subject == "Votre licence SN-7F3A-2291 arrive à échéance le 31/12/2026"
    assert claire.message["Auto-Submitted"] == "auto-generated"
    assert {a.addr_spec for a in claire.message["To"].addresses} == {CLAIRE, PAUL}
    for part in (claire.text(), claire.html(), paul.text()):
        assert "Gestion Commerciale 100" in part and "dans 30 jours" in part
        assert settings.sales_admin.phone in part and ADV in part   # whom to call to renew it
        assert "SN-42EE-9001" not in part and "SN-1B22-0042" not in part
    assert phone_cells(claire.html()) == [(GREEN, "active")]
    oliver = received(relay, OLIVER)[0]
    assert oliver.subject == "Your licence SN-42EE-9001 ends on 15 Dec 2026"
    assert "in 30 days" in oliver.text() and settings.sales_admin.phone in oliver.html()
    assert relay.to(HELENE) == []

    # Once: the same clock, later days and a second run warn nobody again.
    for at in (paris(2026, 12, 1, 9, 0), paris(2026, 12, 2, 9, 0), paris(2026, 12, 31, 9, 0)):
        assert job(at) == {}
    assert len(relay.to(CLAIRE)) == 1 and len(relay.to(OLIVER)) == 1
    # Renewed to a new end date: warned again before that one.
    ends(loaded, "SN-7F3A-2291", dt.date(2027, 12, 31))
    assert job(paris(2027, 12, 1, 9, 0)) == {"warned": 1}
    assert "31/12/2027" in received(relay, CLAIRE, 2)[1].subject


def test_the_warning_is_a_job_of_the_command_line(loaded, settings, tmp_path) -> None:
    from click.testing import CliRunner

    from gateway.cli import main as cli
    ends(loaded, "SN-7F3A-2291", dt.date(2026, 12, 31))
    config = tmp_path / "gateway.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n[licences]\nexpiry_notice_days = 10\n',
                      encoding="utf-8")
    run = ["--config", str(config), "jobs", "run", "expiry-notice", "--now"]
    assert "expiry-notice: nothing due" in CliRunner().invoke(cli, [*run, "2026-12-20T08:00:00"]).output
    assert "expiry-notice: warned: 1" in CliRunner().invoke(cli, [*run, "2026-12-21T08:00:00"]).output
    assert "expiry-notice: nothing due" in CliRunner().invoke(cli, [*run, "2026-12-21T08:00:00"]).output
    listing = CliRunner().invoke(cli, ["--config", str(config), "jobs", "list"])
    assert listing.exit_code == 0 and "expiry-notice" in listing.output


# -- registration: a name, and where the serial is found ------------------------------------------

def test_registration_takes_the_name_line_and_welcomes_with_the_licences(gateway, relay, loaded) -> None:
    register = "[INSCRIPTION] [CLIENT C10042] [SERIE SN-7F3A-2291]"
    neutral = ask(gateway, relay, NEWCOMER, register, "Nom : Julie Noël\n\nBonjour, je rejoins l'équipe.\n",
                  name="jnoel")
    for part in (neutral.text(), neutral.html()):
        assert "Julie Noël" in part and "facture de maintenance" in part
    code = re.search(r"\b(\d{6})\b", received(relay, NEWCOMER, 2)[1].text()).group(1)
    with session_scope(loaded) as session:
        assert session.scalar(select(Contact.name).where(Contact.email == NEWCOMER)) == "Julie Noël"
    welcome = ask(gateway, relay, NEWCOMER, f"[INSCRIPTION {code}]")
    assert welcome.subject.startswith("Votre inscription auprès de")
    for part in (welcome.text(), welcome.html()):
        assert "SN-7F3A-2291" in part and "Gestion Commerciale 100" in part and "SN-1B22-0042" in part
        assert "SN-88C1-5530" not in part
    assert phone_cells(welcome.html()) == [(GREEN, "active"), (RED, "inactive")]
    joined = received(relay, CLAIRE)[-1]
    assert "Julie Noël" in joined.text() and "Julie Noël" in joined.html()


def test_registration_without_a_name_reads_well_in_french(gateway, relay, loaded) -> None:
    answer = ask(gateway, relay, NEWCOMER, "[INSCRIPTION] [CLIENT C10042] [SERIE SN-7F3A-2291]", "Bonjour.\n")
    for part in (answer.text(), answer.html()):
        assert "sans indiquer de nom" in part and "(non indiqué)" not in part
    # The line to add is shown whole, never cut between its name and its closing quote.
    assert "une ligne « Nom : » suivie" in " ".join(answer.text().replace("\u00a0", " ").split())
    assert any("« Nom : »" in line.replace("\u00a0", " ") for line in answer.text().splitlines())


def test_registration_without_a_name_asks_for_it_in_english(gateway, relay, loaded) -> None:
    stranger = "jane.doe@northwind.example"
    english = {"Accept-Language": "en"}  # (set_content drops Content-* headers)
    answer = ask(gateway, relay, stranger, "[REGISTER] [CUSTOMER C30105] [SERIAL SN-42EE-9001]", "Hello.\n",
                 headers=english)
    assert answer.subject.startswith("Your registration request")
    for part in (answer.text(), answer.html()):
        assert "Your name was not given" in part and "maintenance invoice" in part
        assert "without a name" in part and "(not given)" not in part
    # No code without a name; with a "Name:" line, the code follows the same neutral answer.
    send(gateway.settings, mail(CLAIRE, "[SUIVI]"))
    received(relay, CLAIRE)
    assert len(relay.to(stranger)) == 1
    send(gateway.settings, mail(stranger, "[REGISTER] [CUSTOMER C30105] [SERIAL SN-42EE-9001]", "Name: Jane Doe\n",
                                headers=english))
    got = received(relay, stranger, 3)
    assert "Jane Doe" in got[1].text() and re.search(r"\b\d{6}\b", got[2].text())
    with session_scope(loaded) as session:
        assert session.scalar(select(Contact.name).where(Contact.email == stranger)) == "Jane Doe"
