"""Human output of the commands: values as words (no `None`, `False`, `b'…'` or dicts), and
tables with a header. `--json` never comes here: it prints the records as they are.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

WIDEST = 60  # a cell longer than this is cut, marked with "…"; --json has it whole


def text(value: Any) -> str:
    """`value` as an operator reads it: "-" for nothing, yes/no, lists joined by commas,
    a mapping as "key: value, …", times without their UTC offset, one line."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    if isinstance(value, str) and _is_time(value):
        return value.replace("T", " ").removesuffix("+00:00")[:19] + (" UTC" if value.endswith("+00:00") else "")
    return " ".join(str(value).split())


def _is_time(value: str) -> bool:
    if len(value) < 19 or value[10] != "T":
        return False
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _cell(value: Any) -> str:
    shown = text(value)
    return shown if len(shown) <= WIDEST else shown[:WIDEST - 1] + "…"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], indent: str = "") -> list[str]:
    """Lines of a table: a header naming `columns` (upper case, `_` as a space), then one
    line per row; "(none)" under the header when there is no row."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    header = [c.replace("_", " ").upper() for c in columns]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(columns))]
    lines = [indent + "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
             for line in [header, *cells]]
    return lines if cells else [*lines, indent + "(none)"]


def fields(record: Mapping[str, Any], keys: Iterable[str] | None = None) -> list[str]:
    """Lines of `name   value`, one per key of `record` (or of `keys`), names aligned."""
    names = list(keys if keys is not None else record)
    width = max((len(n) for n in names), default=0)
    return [f"{n.replace('_', ' ').ljust(width)}  {text(record.get(n))}" for n in names]


def echo(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)
