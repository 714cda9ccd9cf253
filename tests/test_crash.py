"""The crash battery (bench/crash.py), short: `gateway serve` runs as a child process under a
steady load of mail, is killed with SIGKILL three times and started again, then settles.
Nothing acknowledged is lost or stored twice, everything is processed, no case is opened
twice, and every delivery is sent or due again once its dead sender's claim expires."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import crash


def test_a_gateway_killed_under_load_loses_nothing_and_does_nothing_twice(database_url: str, tmp_path: Path) -> None:
    row = crash.battery(database_url, tmp_path, runs=3, seconds=1.0, clients=3, claim_seconds=3)
    assert row["problems"] == [], row
    # The load really ran through the kills: messages acknowledged, cases opened, mail sent.
    assert row["acknowledged"] > 20 and row["cases"] > 5 and row["deliveries_sent"] > 20, row
    assert row["outcomes"].keys() <= {"created", "appended"}, row  # type: ignore[union-attr]
    # The deliveries a killed gateway had claimed went out once its claim expired.
    assert row["deliveries_sent"] == row["deliveries"], row
