"""`gateway import FILE`: reference data in, checked whole before anything is written,
matched on natural keys so that importing again updates and never duplicates."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result
from harness import CLAIRE, SAMPLE_DATA, SUPPORT, mail
from sqlalchemy import Engine, func, select

from gateway import intake
from gateway.cli import main
from gateway.config import Settings
from gateway.db import session_scope
from gateway.models import Agent, Client, Contact, Contract, Licence, PointsEntry
from gateway.pipeline import run

TABLES = {"clients": Client, "contracts": Contract, "licences": Licence, "contacts": Contact,
          "agents": Agent, "points": PointsEntry}
SAMPLE_COUNTS = {"clients": 3, "contracts": 2, "licences": 4, "contacts": 4, "agents": 2, "points": 1}
UNCHANGED = ("clients: 0 new, 0 changed; contracts: 0 new, 0 changed; licences: 0 new, 0 changed; "
             "contacts: 0 new, 0 changed; agents: 0 new, 0 changed")


def gateway(tmp_path: Path, settings: Settings, *args: str) -> Result:
    """Run the `gateway` command with a configuration file naming the test's database."""
    config = tmp_path / "gateway.toml"
    config.write_text(f"[database]\nurl = {json.dumps(settings.database_url)}\n\n"
                      f"[support]\naddress = {json.dumps(SUPPORT)}\n", encoding="utf-8")
    return CliRunner().invoke(main, ["--config", str(config), *args])


def import_text(tmp_path: Path, settings: Settings, text: str, name: str = "data.toml") -> Result:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return gateway(tmp_path, settings, "import", str(path))


def counts(engine: Engine) -> dict[str, int]:
    with session_scope(engine) as session:
        return {name: session.scalar(select(func.count()).select_from(model)) or 0
                for name, model in TABLES.items()}


def client_names(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as session:
        return {code: name for code, name in session.execute(select(Client.code, Client.name))}


def contract_points(engine: Engine, code: str) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(Contract.points).join(Client, Contract.client_id == Client.id)
                              .where(Client.code == code))


def test_import_of_the_sample_data_prints_what_it_created(tmp_path, settings, engine) -> None:
    result = import_text(tmp_path, settings, SAMPLE_DATA)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "clients: 3 new, 0 changed; contracts: 2 new, 0 changed; licences: 4 new, 0 changed; "
        "contacts: 4 new, 0 changed; agents: 2 new, 0 changed")
    assert counts(engine) == SAMPLE_COUNTS
    assert client_names(engine)["C10042"] == "Boulangeries Lefèvre"


def test_importing_twice_changes_nothing(tmp_path, settings, engine) -> None:
    assert import_text(tmp_path, settings, SAMPLE_DATA).exit_code == 0
    before = counts(engine)
    result = import_text(tmp_path, settings, SAMPLE_DATA)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == UNCHANGED
    assert counts(engine) == before == SAMPLE_COUNTS


def test_a_changed_name_updates_the_record(tmp_path, settings, engine) -> None:
    assert import_text(tmp_path, settings, SAMPLE_DATA).exit_code == 0
    renamed = SAMPLE_DATA.replace('name = "Boulangeries Lefèvre"', 'name = "Boulangeries Lefèvre SAS"')
    result = import_text(tmp_path, settings, renamed)
    assert result.exit_code == 0, result.output
    assert "clients: 0 new, 1 changed;" in result.stdout
    assert client_names(engine)["C10042"] == "Boulangeries Lefèvre SAS"
    assert counts(engine) == SAMPLE_COUNTS


BAD_RECORDS = """
[[clients]]
code = "C40001"
name = "Valid Newcomer"

[[clients]]
name = "Client sans code"

[[licences]]
serial = "SN-ORPHAN-1"
client = "C99999"
product = "Paie RH"

[[licences]]
serial = "SN-TWICE-2"
client = "C40001"

[[licences]]
serial = "SN-TWICE-2"
client = "C40001"

[[contacts]]
client = "C40001"
name = "Adresse invalide"
email = "not-an-email"

[[contacts]]
client = "C40001"
name = "Valid Contact"
email = "valid.contact@newcomer.example"
"""

# (record named, field named) for each error the file above holds.
EXPECTED_ERRORS = [
    ("clients #5", "'code'"),  # the fifth [[clients]] of the file
    ("licence SN-ORPHAN-1", "client 'C99999'"),
    ("licence SN-TWICE-2", "serial listed twice"),
    ("contact not-an-email", "'email'"),
]


def _bad_file(base: str) -> str:
    # A renamed client among the errors: it must not be applied either.
    return base.replace('name = "Boulangeries Lefèvre"', 'name = "Renamed Meanwhile"') + BAD_RECORDS


def test_a_file_with_errors_names_each_and_imports_nothing(tmp_path, settings, engine) -> None:
    assert import_text(tmp_path, settings, SAMPLE_DATA).exit_code == 0
    before = counts(engine)
    result = import_text(tmp_path, settings, _bad_file(SAMPLE_DATA), "bad.toml")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(EXPECTED_ERRORS), result.stderr
    for record, field in EXPECTED_ERRORS:
        assert any(record in line and field in line for line in errors), (record, field, errors)
    assert "nothing imported: 4 error(s)" in result.stderr
    assert counts(engine) == before
    assert client_names(engine)["C10042"] == "Boulangeries Lefèvre"
    assert "C40001" not in client_names(engine)


def test_a_file_with_errors_imports_nothing_into_an_empty_database(tmp_path, settings, engine) -> None:
    result = import_text(tmp_path, settings, _bad_file(SAMPLE_DATA), "bad.toml")
    assert result.exit_code != 0 and "nothing imported" in result.stderr
    assert counts(engine) == dict.fromkeys(TABLES, 0)


def test_reimport_does_not_refill_spent_priority_points(tmp_path, settings, engine) -> None:
    assert import_text(tmp_path, settings, SAMPLE_DATA).exit_code == 0
    assert contract_points(engine, "C10042") == 1
    # Claire spends the contract's one point on a case, through the real pipeline.
    opening = mail(CLAIRE, "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE 2] [PRIORITE] Urgent")
    outcome = run.process(engine, settings, intake.store(engine, opening.as_bytes(), "pipe").id)
    assert outcome is not None and outcome.outcome == "created", outcome
    assert contract_points(engine, "C10042") == 0
    result = import_text(tmp_path, settings, SAMPLE_DATA)
    assert result.exit_code == 0 and result.stdout.strip() == UNCHANGED
    assert contract_points(engine, "C10042") == 0
    # A changed level is applied; the points still come from the ledger only.
    result = import_text(tmp_path, settings, SAMPLE_DATA.replace('level = "privilege"', 'level = "excellence"'))
    assert result.exit_code == 0 and "contracts: 0 new, 1 changed" in result.stdout
    assert contract_points(engine, "C10042") == 0
    with session_scope(engine) as session:
        ledger = [(e.delta, e.balance) for e in session.scalars(select(PointsEntry).order_by(PointsEntry.id))]
    assert ledger == [(1, 1), (-1, 0)]


def test_serials_that_differ_only_by_dashes_are_refused(tmp_path, settings, engine) -> None:
    assert import_text(tmp_path, settings, SAMPLE_DATA).exit_code == 0
    result = import_text(tmp_path, settings, '[[licences]]\nserial = "sn 7f3a.2291"\nclient = "C10042"\n')
    assert result.exit_code != 0
    assert "'sn 7f3a.2291'" in result.output and "'SN-7F3A-2291'" in result.output
    assert counts(engine)["licences"] == SAMPLE_COUNTS["licences"]
