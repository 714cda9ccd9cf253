"""The `gateway` command as the operator runs it: ingest (file, folder, standard input,
exit 75 when nothing can be stored), cases, inbound (held messages and retry), outbox and
status, each through click's CliRunner with a configuration file on the test's database."""
from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from harness import CLAIRE, GREGOIRE, HELENE, MATHILDE, OLIVER, PAUL, SUPPORT, agent_mail, mail
from sqlalchemy import Engine, make_url, select, text

from gateway import intake
from gateway.cli import main
from gateway.config import Settings
from gateway.db import session_scope
from gateway.models import InboundMessage
from gateway.pipeline import run
from gateway.receive.pipe_exit import EX_TEMPFAIL

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"
OPEN_HELENE = "[CLIENT C20077] [SERIE SN-88C1-5530] [CRITICITE 3] Lenteurs"
OPEN_OLIVER = "[CUSTOMER C30105] [SERIAL SN-42EE-9001] [SEVERITY high] Ledger export fails"

CASE_LIST_KEYS = {"number", "status", "client", "serial", "title", "criticality", "priority", "updated_at"}
CASE_SHOW_KEYS = {"number", "status", "client", "serial", "module", "criticality", "priority", "title",
                  "main_contact", "distribution_list", "events", "attachments"}
INBOUND_KEYS = {"id", "received_at", "message_id", "sender", "subject", "outcome", "case", "reasons"}
STATUS_KEYS = {"inbound_pending", "inbound_held", "outbox_pending", "outbox_retrying", "outbox_failed",
               "failing_contacts", "open_cases", "last_held", "last_delivery_errors"}


def write_config(path: Path, database_url: str, **sections: dict[str, Any]) -> Path:
    """A gateway.toml naming `database_url` and the support address, plus `sections`."""
    tables = {"database": {"url": database_url}, "support": {"address": SUPPORT}, **sections}
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class Cli:
    """`gateway --config FILE ...` run in-process."""
    config: Path

    def __call__(self, *args: str, input: bytes | None = None) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.config), *args], input=input)

    def ok(self, *args: str, input: bytes | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


def assert_clean_failure(result: Result, message: str) -> None:
    """Non-zero exit with a message for the operator, and no traceback."""
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def cli(tmp_path: Path, settings: Settings) -> Cli:
    return Cli(write_config(tmp_path / "gateway.toml", settings.database_url))


def ingest(cli: Cli, *messages: Any) -> None:
    """Each message through `gateway ingest` on standard input, as an MTA pipes it."""
    for msg in messages:
        cli.ok("ingest", input=msg.as_bytes())


def maildir_messages(folder: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((folder / "new").iterdir())]


# -- ingest ----------------------------------------------------------------------------------

def test_ingest_a_file_stores_and_processes_it(cli, loaded, tmp_path) -> None:
    path = tmp_path / "open.eml"
    path.write_bytes(mail(CLAIRE, OPEN).as_bytes())
    result = cli.ok("ingest", str(path))
    assert "1 message(s) stored and processed" in result.stdout
    [row] = cli.json("inbound", "list")
    assert (row["outcome"], row["case"], row["sender"]) == ("created", 1, CLAIRE)
    assert [c["number"] for c in cli.json("cases", "list")] == [1]


def test_ingest_a_folder_stores_every_message_in_it(cli, loaded, tmp_path) -> None:
    folder = tmp_path / "backlog"
    (folder / "later").mkdir(parents=True)
    (folder / "1.eml").write_bytes(mail(CLAIRE, OPEN).as_bytes())
    (folder / "2.eml").write_bytes(mail(HELENE, OPEN_HELENE).as_bytes())
    (folder / "later" / "3.eml").write_bytes(mail(OLIVER, OPEN_OLIVER).as_bytes())
    (folder / ".hidden").write_bytes(b"not a message: hidden files are skipped")
    result = cli.ok("ingest", str(folder))
    assert "3 message(s) stored and processed" in result.stdout
    rows = cli.json("inbound", "list")
    assert [(r["sender"], r["outcome"]) for r in rows] == [(CLAIRE, "created"), (HELENE, "created"),
                                                           (OLIVER, "created")]
    assert [c["client"] for c in cli.json("cases", "list")] == ["C10042", "C20077", "C30105"]


def test_ingest_from_standard_input(cli, loaded) -> None:
    result = cli.ok("ingest", input=mail(CLAIRE, OPEN).as_bytes())
    assert result.stderr == ""
    [row] = cli.json("inbound", "list")
    assert row["outcome"] == "created" and row["subject"] == OPEN
    assert cli.json("status")["outbox_pending"] == 3  # acknowledgement and the two agents


def test_ingest_stores_the_envelope_given_on_its_command_line(cli, loaded) -> None:
    token = SUPPORT.replace("@", "+1-0123456789abcdef0123@")
    cli.ok("ingest", "--sender", CLAIRE, "--recipient", SUPPORT, f"--recipient={token}",
           input=mail(CLAIRE, OPEN).as_bytes())
    [row] = _inbound(loaded)
    assert (row.door, row.envelope_from, row.envelope_to) == ("pipe", CLAIRE, [SUPPORT, token])
    assert row.outcome == "created"


@pytest.mark.parametrize("sender", ["", "MAILER-DAEMON", "<>"])
def test_ingest_takes_postfix_spellings_of_the_null_sender(cli, loaded, sender) -> None:
    """pipe(8)'s `${sender}` is "" with `null_sender=`, and MAILER-DAEMON without it: an
    out-of-office reply that only its null sender tells from a person's mail."""
    cli.ok("ingest", "--sender", sender, "--recipient", SUPPORT,
           input=mail(CLAIRE, "Absence du bureau", "Je suis absente jusqu'au 3 décembre.\n").as_bytes())
    [row] = _inbound(loaded)
    assert (row.envelope_from, row.outcome) == ("", "ignored")
    assert cli.json("status")["outbox_pending"] == 0


def test_ingest_refuses_an_envelope_with_files(cli, loaded, tmp_path) -> None:
    path = tmp_path / "open.eml"
    path.write_bytes(mail(CLAIRE, OPEN).as_bytes())
    result = cli("ingest", "--sender", CLAIRE, str(path))
    # Standard input is not a terminal here, as under an MTA: a usage error exits 75.
    assert result.exit_code == EX_TEMPFAIL and "standard input" in result.output
    assert cli.json("inbound", "list") == []


def _inbound(engine: Engine) -> list[InboundMessage]:
    with session_scope(engine) as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def _unreachable_database(settings: Settings, tmp_path: Path) -> str:
    if settings.database_url.startswith("sqlite"):
        # The database file would live inside a regular file: it can be neither created
        # nor opened, whoever runs the test (root ignores read-only folders).
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the database folder should be")
        return f"sqlite:///{blocker / 'gateway.sqlite3'}"
    return make_url(settings.database_url).set(
        database=f"gw_missing_{secrets.token_hex(6)}").render_as_string(hide_password=False)


def test_ingest_exits_75_when_the_database_cannot_be_reached(settings, tmp_path) -> None:
    broken = Cli(write_config(tmp_path / "broken.toml", _unreachable_database(settings, tmp_path)))
    result = broken("ingest", input=mail(CLAIRE, OPEN).as_bytes())
    assert result.exit_code == EX_TEMPFAIL == 75, result.output
    assert result.stderr.startswith("gateway: could not store the message (")
    assert "Traceback" not in result.output


def test_ingest_exits_75_when_storing_fails_then_stores_on_the_retry(cli, loaded) -> None:
    raw = mail(CLAIRE, OPEN).as_bytes()
    # The inbound table is away for a moment: the database answers but cannot store.
    with loaded.begin() as connection:
        connection.execute(text("ALTER TABLE inbound_messages RENAME TO inbound_messages_away"))
    try:
        result = cli("ingest", input=raw)
    finally:
        with loaded.begin() as connection:
            connection.execute(text("ALTER TABLE inbound_messages_away RENAME TO inbound_messages"))
    assert result.exit_code == 75, result.output
    assert result.stderr.startswith("gateway: could not store the message (")
    assert cli.json("inbound", "list") == []
    cli.ok("ingest", input=raw)  # the MTA tries again later
    assert [r["outcome"] for r in cli.json("inbound", "list")] == ["created"]


# -- cases -------------------------------------------------------------------------------------

def test_cases_list_json_has_exactly_the_documented_keys(cli, loaded) -> None:
    ingest(cli, mail(CLAIRE, OPEN))
    [case] = cli.json("cases", "list")
    assert set(case) == CASE_LIST_KEYS
    assert case["number"] == 1 and case["status"] == "nouveau" and case["client"] == "C10042"
    assert case["serial"] == "SN-7F3A-2291" and case["title"] == "Factures impossibles"
    assert case["criticality"] == 2 and case["priority"] is False
    assert dt.datetime.fromisoformat(case["updated_at"]).tzinfo is not None


def test_cases_list_filters_on_status_and_client(cli, loaded, settings) -> None:
    ingest(cli, mail(CLAIRE, OPEN), mail(HELENE, OPEN_HELENE), mail(CLAIRE, OPEN + " encore"),
           agent_mail(loaded, settings, MATHILDE, 3, "[Dossier #3] réponse", body="Nous regardons."))
    assert [(c["number"], c["status"]) for c in cli.json("cases", "list")] == [
        (1, "nouveau"), (2, "nouveau"), (3, "en_cours")]
    assert [c["number"] for c in cli.json("cases", "list", "--status", "nouveau", "--client", "C10042")] == [1]
    assert [c["number"] for c in cli.json("cases", "list", "--status", "en_cours")] == [3]
    assert [c["number"] for c in cli.json("cases", "list", "--client", "C20077")] == [2]
    assert cli.json("cases", "list", "--client", "C99999") == []
    table = cli.ok("cases", "list", "--client", "C10042").stdout.splitlines()
    assert table[0].split() == ["NUMBER", "STATUS", "CLIENT", "SERIAL", "CRITICALITY", "PRIORITY", "TITLE"]
    assert len(table) == 3 and table[1].split()[:6] == ["1", "nouveau", "C10042", "SN-7F3A-2291", "2", "no"]
    assert not {"None", "False", "True"} & set(" ".join(table).split())


def test_cases_show_json_has_the_timeline_and_attachments(cli, loaded, settings) -> None:
    data = bytes(range(256)) * 40
    ingest(cli, mail(CLAIRE, OPEN + " [MODULE ventes]", cc=[PAUL],
                     attachments=[("journal.bin", data, "application/octet-stream")]),
           agent_mail(loaded, settings, MATHILDE, 1, "[Dossier #1] [ATTENTE] question",
                      body="Quelle version utilisez-vous ?"))
    detail = cli.json("cases", "show", "1")
    assert set(detail) == CASE_SHOW_KEYS
    assert (detail["number"], detail["status"], detail["client"], detail["serial"]) == (
        1, "attente_client", "C10042", "SN-7F3A-2291")
    assert (detail["module"], detail["criticality"], detail["priority"]) == ("Ventes", 2, False)
    assert detail["title"] == "Factures impossibles"
    assert detail["main_contact"] == CLAIRE and detail["distribution_list"] == [PAUL]
    events = detail["events"]
    for event in events:
        assert {"kind", "author", "at", "text"} <= set(event)
        assert dt.datetime.fromisoformat(event["at"]).tzinfo is not None
    assert [(e["kind"], e["author"]) for e in events] == [
        ("opened", CLAIRE), ("agent_message", MATHILDE), ("status_change", MATHILDE)]
    assert "Quelle version utilisez-vous ?" in events[1]["text"]
    assert detail["attachments"] == [
        {"filename": "journal.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    shown = cli.ok("cases", "show", "1").stdout
    lines = shown.splitlines()
    assert "main contact       " + CLAIRE in lines and "module             Ventes" in lines
    assert "priority           no" in lines and "None" not in shown and "False" not in shown
    assert lines[-2].split() == ["FILENAME", "SIZE"] and lines[-1].split() == ["journal.bin", str(len(data))]


def test_cases_show_of_an_unknown_case_fails_cleanly(cli, loaded) -> None:
    assert_clean_failure(cli("cases", "show", "999"), "no case 999")
    assert_clean_failure(cli("cases", "show", "999", "--json"), "no case 999")


# -- inbound -------------------------------------------------------------------------------------

def test_inbound_list_json_has_exactly_the_documented_keys(cli, loaded) -> None:
    opening = mail(CLAIRE, OPEN)
    ingest(cli, opening, mail("nobody@unknown.example", "Bonjour"))
    rows = cli.json("inbound", "list")
    assert [set(r) for r in rows] == [INBOUND_KEYS, INBOUND_KEYS]
    created, refused = rows
    assert created["message_id"] == opening["Message-ID"] and created["case"] == 1
    assert (created["outcome"], created["reasons"]) == ("created", ["case 1 opened"])
    assert dt.datetime.fromisoformat(created["received_at"]).tzinfo is not None
    assert refused["outcome"] == "refused" and refused["case"] is None
    assert refused["sender"] == "nobody@unknown.example" and refused["subject"] == "Bonjour"
    assert refused["reasons"] and isinstance(refused["reasons"], list)


def _hold(engine: Engine, settings: Settings, tmp_path: Path, msg: Any) -> int:
    """Store `msg` and process it with no templates at all: rendering the answer raises,
    which is what any unexpected error in the pipeline looks like, so the message is held."""
    empty = tmp_path / "no-templates"
    empty.mkdir()
    broken = dataclasses.replace(settings, templates_dir=str(empty))
    stored = intake.store(engine, msg.as_bytes(), "pipe")
    outcome = run.process(engine, broken, stored.id)
    assert outcome is not None and outcome.outcome == "held", outcome
    return stored.id


def test_a_held_message_is_listed_and_retried(cli, loaded, settings, tmp_path) -> None:
    ingest(cli, mail(HELENE, OPEN_HELENE))
    held_id = _hold(loaded, settings, tmp_path, mail(CLAIRE, OPEN, cc=[PAUL]))
    [held] = cli.json("inbound", "list", "--held")
    assert set(held) == INBOUND_KEYS
    assert (held["id"], held["outcome"], held["case"], held["sender"]) == (held_id, "held", None, CLAIRE)
    assert held["reasons"][0].startswith("unexpected error: TemplateNotFound")
    status = cli.json("status")
    assert status["inbound_held"] == 1 and status["last_held"][0]["id"] == held_id
    assert status["outbox_pending"] == 3  # Hélène's opening only: the held one queued nothing

    result = cli.ok("inbound", "retry", str(held_id))
    assert f"message {held_id}: created" in result.stdout
    assert cli.json("inbound", "list", "--held") == []
    row = next(r for r in cli.json("inbound", "list") if r["id"] == held_id)
    # Not necessarily case 2: PostgreSQL does not give back the number the held attempt drew.
    number = row["case"]
    assert row["outcome"] == "created" and number > 1
    assert cli.json("cases", "show", str(number))["main_contact"] == CLAIRE
    status = cli.json("status")
    assert status["inbound_held"] == 0 and status["outbox_pending"] == 3 + 4

    # The acknowledgement goes out (the configured transport writes to a Maildir).
    assert "sent: 7" in cli.ok("outbox", "send").stdout
    sent = maildir_messages(tmp_path / "var" / "sent")
    ack = [m for m in sent if m["Subject"] == f"[Dossier #{number}] Factures impossibles"
           and [a.addr_spec for a in m["To"].addresses] == [CLAIRE]]
    assert len(ack) == 2  # one copy for Claire, one for Paul on Cc
    assert [a.addr_spec for a in ack[0]["Cc"].addresses] == [PAUL]
    notices = [m for m in sent if f"#{number}]" in m["Subject"] and m not in ack]
    assert len(notices) == 2 and {a.addr_spec for a in notices[0]["To"].addresses} == {MATHILDE, GREGOIRE}


def test_retrying_a_message_that_is_not_held_fails_cleanly(cli, loaded) -> None:
    ingest(cli, mail(CLAIRE, OPEN))
    assert_clean_failure(cli("inbound", "retry", "1"), "message 1 is created, not held")
    assert_clean_failure(cli("inbound", "retry", "42"), "no message 42")
    assert cli.json("status")["outbox_pending"] == 3  # nothing was processed again


# -- outbox --------------------------------------------------------------------------------------

@pytest.fixture
def relay_cli(tmp_path: Path, settings: Settings, relay: Any) -> Cli:
    return Cli(write_config(tmp_path / "relay.toml", settings.database_url, outbound={
        "transport": "smtp", "host": "127.0.0.1", "port": relay.controller.port}))


def test_outbox_list_and_failed_deliveries(relay_cli, relay, loaded) -> None:
    cli = relay_cli
    relay.refuse = lambda rcpt: "550 5.1.1 no such user" if rcpt.lower() == PAUL else None
    ingest(cli, mail(CLAIRE, OPEN, cc=[PAUL]))
    queued = cli.json("outbox", "list")
    assert {r["recipient"] for r in queued} == {CLAIRE, PAUL, MATHILDE, GREGOIRE}
    for row in queued:
        assert {"id", "recipient", "status", "attempts", "next_attempt_at", "last_error", "kind",
                "subject", "case"} <= set(row)
        assert (row["status"], row["attempts"], row["case"]) == ("pending", 0, 1)
    assert cli.json("outbox", "list", "--failed") == []

    refused = cli("outbox", "send")  # did not do all it says: exits 1
    assert refused.exit_code == 1 and refused.stdout.startswith("sent: 3, failed: 1\n")
    assert "1 delivery not sent" in refused.output and "Traceback" not in refused.output
    [failed] = cli.json("outbox", "list", "--failed")
    assert (failed["recipient"], failed["status"], failed["attempts"]) == (PAUL, "failed", 1)
    assert failed["last_error"] == "550 5.1.1 no such user" and failed["kind"] == "case_opened"
    table = cli.ok("outbox", "list", "--failed").stdout.splitlines()
    assert len(table) == 2 and table[0].startswith("ID") and PAUL in table[1]
    assert table[1].endswith("550 5.1.1 no such user")
    status = cli.json("status")
    assert status["outbox_failed"] == 1 and status["last_delivery_errors"][0]["recipient"] == PAUL

    relay.refuse = lambda rcpt: None
    assert_clean_failure(cli("outbox", "retry", str(queued[0]["id"])), "not failed")
    assert_clean_failure(cli("outbox", "retry", "9999"), "no delivery 9999")
    assert f"delivery {failed['id']} queued again" in cli.ok("outbox", "retry", str(failed["id"])).stdout
    assert cli.ok("outbox", "send").stdout.strip() == "sent: 1"
    assert len(relay.to(PAUL)) == 1 and cli.json("outbox", "list", "--failed") == []
    assert cli.ok("outbox", "send").stdout.strip() == "nothing to send"


# -- status --------------------------------------------------------------------------------------

def test_status_json_keys(cli, engine) -> None:
    status = cli.json("status")
    # Queue depths, held messages, failing deliveries, last errors (PRODUCT.md); more may follow.
    assert set(status) >= STATUS_KEYS
    assert {k: status[k] for k in STATUS_KEYS} == {
        **dict.fromkeys(STATUS_KEYS - {"last_held", "last_delivery_errors"}, 0),
        "last_held": [], "last_delivery_errors": []}
    shown = cli.ok("status").stdout
    lines = shown.splitlines()
    assert "inbound held      0" in lines and "outbox failed     0" in lines
    assert "last delivery errors" in lines and "{" not in shown and "None" not in shown


def test_db_upgrade(cli) -> None:
    assert cli.ok("db", "upgrade").stdout.strip() == "database is up to date"
    assert cli.ok("db", "upgrade").stdout.strip() == "database is up to date"

