"""Figures, their targets, and the final table (text or JSON).

A `Figure` is one measured value beside the baseline measured in the same invocation,
their ratio, and the target the issue "Speed" sets, if any. The table says which targets
are met; it never decides the exit status (a benchmark gives figures, not verdicts).
"""
from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Check = Callable[[float, float | None], bool]


@dataclass(frozen=True)
class Target:
    """What a figure must reach: `text` for people, `check(value, ratio)` for the table."""
    text: str
    check: Check


def at_least(value: float, unit: str) -> Target:
    return Target(f"≥ {value:g} {unit}", lambda v, _r: v >= value)


def below(value: float, unit: str) -> Target:
    return Target(f"< {value:g} {unit}", lambda v, _r: v < value)


def ratio_at_least(ratio: float, of: str) -> Target:
    return Target(f"≥ {ratio:g} × {of}", lambda _v, r: r is not None and r >= ratio)


def ratio_at_most(ratio: float, of: str) -> Target:
    return Target(f"≤ {ratio:g} × {of}", lambda _v, r: r is not None and r <= ratio)


def both(first: Target, second: Target) -> Target:
    return Target(f"{first.text} and {second.text}",
                  lambda v, r: first.check(v, r) and second.check(v, r))


@dataclass
class Figure:
    """One line of the table. `ratio` is value / baseline when both are known."""
    key: str
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.target.check(self.value, self.ratio)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = self.target.text if self.target else None
        out["ratio"] = round(self.ratio, 3) if self.ratio is not None else None
        out["met"] = self.met
        return out


def number(value: float | None, unit: str = "") -> str:
    """A value as people read it: 3 significant figures at most, thousands separated."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(figures: list[Figure]) -> str:
    """The final table: figure, value, baseline, ratio, target, met."""
    rows = [("figure", "value", "baseline", "ratio", "target", "met")]
    for f in figures:
        baseline = f"{number(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline is not None else "-"
        met = {True: "met", False: "NOT MET", None: "-"}[f.met]
        rows.append((f.name, number(f.value, f.unit), baseline,
                     f"{f.ratio:.2f}×" if f.ratio is not None else "-", f.target.text if f.target else "-", met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join(lines + (["", "notes:"] + notes if notes else []))


def environment(root: Path) -> dict[str, Any]:
    """Where the figures come from: machine, load, versions, the commit measured."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "gateway"],
                               capture_output=True, text=True, check=False).stdout.strip() != ""
    except OSError:
        commit, dirty = "", False
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(), "commit": commit + ("+changes" if dirty else "")}


def write_json(path: str, figures: list[Figure], env: dict[str, Any], errors: dict[str, str]) -> None:
    data = {"environment": env, "figures": [f.as_dict() for f in figures], "errors": errors}
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    if path == "-":
        sys.stdout.write(text + "\n")
    else:
        Path(path).write_text(text + "\n", encoding="utf-8")
