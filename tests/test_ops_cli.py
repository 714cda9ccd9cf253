"""The command line tells the operator the truth: it exits non-zero when it did not do what
it says, a database that stops it is one line naming the file or server and what to do,
`ingest`'s usage errors keep an MTA's message queued (75), the README's forms work, and a
relay's 5xx at RCPT marks the contact failing, as a delivery report does."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import CLAIRE, PAUL, mail
from test_cli import OPEN, Cli, ingest, maildir_messages, write_config

from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = [sys.executable, "-m", "gateway.cli"]


@pytest.fixture
def cli(tmp_path: Path, settings: Settings) -> Cli:
    return Cli(write_config(tmp_path / "gateway.toml", settings.database_url))


def test_contracts_credit_takes_the_readme_s_form_of_a_withdrawal(cli, loaded) -> None:
    assert cli.ok("contracts", "credit", "C10042", "5", "--reason", "geste").stdout == "C10042: 6 point(s)\n"
    assert cli.ok("contracts", "credit", "C10042", "--", "-2", "--reason", "x").stdout == "C10042: 4 point(s)\n"
    assert cli.ok("contracts", "credit", "C10042", "-1", "--reason", "y").stdout == "C10042: 3 point(s)\n"
    ledger = cli.json("contracts", "show", "C10042")["ledger"]
    assert [(e["delta"], e["reason"]) for e in ledger][-3:] == [(5, "geste"), (-2, "x"), (-1, "y")]
    shown = cli.ok("contracts", "show", "C10042").stdout.splitlines()
    assert shown[1].split() == ["AT", "DELTA", "BALANCE", "CASE", "REASON"] and "None" not in "".join(shown)


def test_an_unknown_status_is_an_error_listing_the_allowed_ones(cli, loaded) -> None:
    result = cli("cases", "list", "--status", "bogus")
    assert result.exit_code == 2 and "'bogus' is not one of" in result.output
    for status in ("nouveau", "en_cours", "attente_client", "resolu", "clos"):
        assert status in result.output


def test_lists_have_a_header_and_no_python_values(cli, loaded) -> None:
    ingest(cli, mail(CLAIRE, OPEN, cc=[PAUL]))
    for args in (["inbound", "list"], ["outbox", "list"], ["contacts", "list"], ["licences", "list"],
                 ["jobs", "list"], ["contacts", "show", CLAIRE], ["status"], ["cases", "show", "1"]):
        shown = cli.ok(*args).stdout
        words = set(shown.replace(",", " ").split())
        assert not words & {"None", "False", "True", "{}", "[]"} and "{'" not in shown and "b'" not in shown, args
    assert cli.ok("inbound", "list").stdout.split()[:4] == ["ID", "RECEIVED", "AT", "OUTCOME"]


def test_cases_show_puts_the_gateway_s_own_events_in_words(cli, loaded) -> None:
    ingest(cli, mail(CLAIRE, OPEN), mail(CLAIRE, "[Dossier #1] [CRITICITE 1] bloquant maintenant"))
    shown = cli.ok("cases", "show", "1").stdout
    assert '{"' not in shown and "criticality_change" in shown
    assert "from: 2, to: 1" in shown.splitlines()


def _run(config: Path, *args: str, stdin: Any = subprocess.PIPE, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GATEWAY_CONFIG", None)
    given: dict[str, Any] = {"input": data} if stdin is subprocess.PIPE else {"stdin": stdin}
    return subprocess.run([*GATEWAY, "--config", str(config), *args], capture_output=True, env=env,
                          timeout=60, check=False, **given)


def test_ingest_usage_errors_keep_the_mta_s_message_queued(tmp_path, settings, engine) -> None:
    config = write_config(tmp_path / "gateway.toml", settings.database_url)
    piped = _run(config, "ingest", "--sender=x@y", "--recipent", "assistance@editeur.example", data=b"Subject: x\n\n")
    assert piped.returncode == 75, piped
    assert piped.stderr.decode().count("\n") == 1 and "the MTA will retry" in piped.stderr.decode()
    leader, follower = os.openpty()  # an operator at a terminal gets click's usual 2
    try:
        at_terminal = _run(config, "ingest", "--recipent", "x", stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert at_terminal.returncode == 2 and b"No such option" in at_terminal.stderr


def test_an_unreachable_database_server_is_one_line(tmp_path, free_port) -> None:
    url = f"postgresql+psycopg://gateway@127.0.0.1:{free_port()}/gateway"
    result = _run(write_config(tmp_path / "gateway.toml", url), "status")
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result
    assert lines[0].startswith("Error: cannot reach postgresql server 127.0.0.1:") and "is it running" in lines[0]


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder another user can enter (pytest's own are root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="gateway-ops-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the -shm file to another user")
def test_a_read_only_shm_file_is_one_line_naming_the_file_and_the_remedy(shared) -> None:
    """The -shm file of another user (root here) leaves SQLite read-only for the gateway's."""
    from postfix import PipeUser, pipe_command
    user = PipeUser.nobody()
    tmp_path = shared
    folder = tmp_path / "state"
    folder.mkdir()
    database = folder / "gateway.sqlite3"
    config = write_config(tmp_path / "gateway.toml", f"sqlite:///{database}")
    assert _run(config, "db", "upgrade").returncode == 0
    for path in (folder, database):
        user.owns(path)
    config.chmod(0o644)
    shm = folder / "gateway.sqlite3-shm"
    shm.touch(0o644)
    command = str(pipe_command(user, tmp_path / "bin"))
    for args in (["status"], ["cases", "list"], ["outbox", "send"]):
        result = user.runs([command, "--config", str(config), *args])
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result
        assert (f"database {database} is read-only for user nobody: {shm} belongs to root" in result.stderr
                and f"chown nobody: {database}*" in result.stderr and "Traceback" not in result.stderr)
    user.owns(shm)
    assert user.runs([command, "--config", str(config), "status"]).returncode == 0
    # A folder the user may not write in (root's here): SQLite cannot create the database.
    elsewhere = tmp_path / "root-only" / "gateway.sqlite3"
    elsewhere.parent.mkdir(mode=0o755)
    other = write_config(tmp_path / "other.toml", f"sqlite:///{elsewhere}")
    other.chmod(0o644)
    result = user.runs([command, "--config", str(other), "status"])
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result
    assert (f"cannot open database {elsewhere}" in result.stderr
            and f"its folder {elsewhere.parent} must exist and be writable by user nobody (owner: root)"
            in result.stderr)


def test_a_relay_refusal_at_rcpt_marks_the_contact_failing(tmp_path, settings, loaded, relay) -> None:
    cli = Cli(write_config(tmp_path / "relay.toml", settings.database_url, outbound={
        "transport": "smtp", "host": "127.0.0.1", "port": relay.controller.port}))
    relay.refuse = lambda rcpt: "550 5.1.1 <paul.girard@boulangeries-lefevre.example>: user unknown" \
        if rcpt.lower() == PAUL else None
    ingest(cli, mail(CLAIRE, OPEN, cc=[PAUL]))
    assert cli("outbox", "send").exit_code == 1
    [paul] = cli.json("contacts", "show", PAUL)
    [claire] = cli.json("contacts", "show", CLAIRE)
    assert paul["failing_since"] is not None and claire["failing_since"] is None
    assert cli.json("status")["failing_contacts"] == 1
    [error] = cli.json("status")["last_delivery_errors"]
    assert error["error"] == "550 5.1.1 <paul.girard@boulangeries-lefevre.example>: user unknown"


def test_maildir_copies_say_whose_they_are(tmp_path, settings, loaded) -> None:
    cli = Cli(write_config(tmp_path / "gateway.toml", settings.database_url,
                           outbound={"transport": "maildir", "maildir": "sent"}))
    ingest(cli, mail(CLAIRE, OPEN, cc=[PAUL]))
    assert cli.ok("outbox", "send").exit_code == 0
    copies = maildir_messages(tmp_path / "sent")
    delivered = sorted(m["Delivered-To"] for m in copies)
    assert len(delivered) == len(copies) == 4 and CLAIRE in delivered and PAUL in delivered
    assert all(m.get_all("Delivered-To") == [m["Delivered-To"]] for m in copies)
