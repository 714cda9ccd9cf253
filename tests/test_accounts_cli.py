"""Operator commands on reference data: contacts, licences, contracts and priority points."""
from __future__ import annotations

from pathlib import Path

import pytest
from harness import CLAIRE, PAUL
from test_cli import Cli, assert_clean_failure, write_config

from gateway.config import Settings


@pytest.fixture
def cli(tmp_path: Path, settings: Settings) -> Cli:
    return Cli(write_config(tmp_path / "gateway.toml", settings.database_url))


def test_contacts_and_licences_lists(cli: Cli, loaded) -> None:
    rows = cli.json("contacts", "list", "--client", "C10042")
    assert [r["email"] for r in rows] == [CLAIRE, PAUL]
    assert {r["status"] for r in rows} == {"active"}
    assert cli.json("contacts", "show", PAUL)[0]["client"] == "C10042"
    assert_clean_failure(cli("contacts", "show", "nobody@x.example"), "no contact")
    licences = {r["serial"]: r for r in cli.json("licences", "list")}
    assert licences["SN-1B22-0042"]["status"] == "inactive"
    assert licences["SN-7F3A-2291"]["status"] == "active"
    assert "SN-1B22-0042" in cli.ok("licences", "list").output


def test_contracts_show_and_credit_keep_a_ledger(cli: Cli, loaded) -> None:
    assert cli.json("contracts", "show", "C10042")["points"] == 1
    assert "C10042: 4 point(s)" in cli.ok("contracts", "credit", "C10042", "3", "--reason", "renouvellement").output
    data = cli.json("contracts", "show", "C10042")
    assert data["points"] == 4
    assert [(e["delta"], e["balance"], e["reason"]) for e in data["ledger"]] == [
        (1, 1, "import"), (3, 4, "renouvellement")]
    assert_clean_failure(cli("contracts", "credit", "--reason", "x", "C10042", "--", "-9"), "cannot withdraw 9")
    assert_clean_failure(cli("contracts", "show", "C99999"), "no client C99999")
    assert cli.json("contracts", "show", "C10042")["points"] == 4
