"""The messages `gateway ingest` reads: standard input (an MTA's pipe), or the files of the
paths an operator names (files, folders of `.eml` files, Maildirs). Imports nothing of the
database, so that a backlog's reading can start before the rest of the command is loaded."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

STDIN = "<stdin>"


def read_sources(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (label, raw) for standard input when `paths` is empty, else for each file of
    `message_files(paths)`."""
    if not paths:
        yield STDIN, sys.stdin.buffer.read()
        return
    for file in message_files(paths):
        yield file, Path(file).read_bytes()


def message_files(paths: list[str]) -> list[str]:
    """The message files of `paths`, in order: a file is itself, a folder gives its regular
    files in name order, recursively, hidden ones skipped; a Maildir (cur/, new/, tmp/)
    gives the messages of new/ then cur/. Raises FileNotFoundError when a path does not
    exist, OSError when a folder cannot be listed."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    return [str(file) for path in map(Path, paths) for file in (_in_folder(path) if path.is_dir() else [path])]


def _in_folder(folder: Path) -> Iterator[Path]:
    if all((folder / sub).is_dir() for sub in ("cur", "new", "tmp")):
        # tmp/ holds deliveries in progress: they are not messages yet.
        for sub in ("new", "cur"):
            yield from sorted(p for p in (folder / sub).iterdir()
                              if p.is_file() and not p.name.startswith("."))
        return
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _in_folder(entry)
        elif entry.is_file():
            yield entry
