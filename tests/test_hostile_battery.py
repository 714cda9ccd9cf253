"""The hostile-input battery (bench/hostile.py) in its short setting, on both databases:
through the real SMTP door of a running `gateway serve`, beside a stream of normal mail,
every hostile input is stored and ends with its outcome, and no normal message is lost."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import hostile

EXPECTED = {
    "second Precedence: bulk": "ignored",
    "Precedence: auto_reply": "ignored",
    "List-Unsubscribe without List-Id": "ignored",
    "X-Auto-Response-Suppress: All": "created",
    "reused Message-ID, other sender": "created",
    "same message by two paths (again)": "ignored",
    "NUL in the Message-ID": "created",
    "Message-ID of 300 characters": "created",
    "long description": "created",
    "case number too big": "refused",
}


def test_the_battery_on_a_running_gateway(database_url) -> None:
    report = hostile.run(database_url, long=False, interval=0.3)
    lines = {line.input: line for line in report.lines}
    assert len(lines) == len(hostile.inputs(False))
    assert all(line.outcome in ("created", "appended", "refused", "ignored") for line in lines.values()), report.table()
    assert {name: lines[name].outcome for name in EXPECTED} == EXPECTED, report.table()
    assert lines["X-Auto-Response-Suppress: All"].answered == "no"
    assert lines["long description"].answered == "yes"  # the relay took its acknowledgement
    assert lines["reused Message-ID, other sender"].answered == "yes"
    assert report.normal_sent > 0 and report.normal_lost == 0, report.table()
