"""The reading process beside a backlog's writer (see `ahead`): it reads batches of file
names on standard input and writes back, for each file, its bytes, their keys and their
parse, until its input ends (the writer is done, or gone however it ended).

It imports the parser and the keys and nothing of the database, so that it starts in a
fraction of a second. A frame is 8 bytes of length, then a pickle: a list of file names
one way, a list of the same length the other, each an `Item` or None where the file could
not be read (the writer reads that one itself, and meets the error). Both ends are the
gateway's own processes: nothing else writes to these pipes.
"""
from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gateway.keys import Keys, keys_of
from gateway.pipeline.parse import ParsedMail, parse

_LENGTH = 8


@dataclass(frozen=True)
class Item:
    """A backlog's message as read before it is stored: its file, bytes and keys, and its
    parse (None when not parsed yet, or when parsing raised: the writer parses it again,
    so that the message is held with its own exception)."""
    label: str
    raw: bytes
    keys: Keys
    parsed: ParsedMail | None = None


def write_frame(stream: IO[bytes], value: Any) -> None:
    """`value` pickled, after its length; flushed."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(_LENGTH, "big"))
    stream.write(data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next value, or raises EOFError when the stream ends before a whole frame."""
    head = stream.read(_LENGTH)
    if len(head) < _LENGTH:
        raise EOFError("the stream ended")
    length = int.from_bytes(head, "big")
    data = stream.read(length)
    if len(data) < length:
        raise EOFError("the stream ended inside a frame")
    return pickle.loads(data)


def read_item(label: str) -> Item | None:
    """The file `label` read, keyed and parsed; None when it cannot be read."""
    try:
        raw = Path(label).read_bytes()
    except OSError:
        return None
    try:
        parsed: ParsedMail | None = parse(raw)
    except Exception:  # noqa: BLE001 - `parse` never raises; should it, the writer holds the message
        parsed = None
    return Item(label, raw, keys_of(raw), parsed)


def main() -> None:
    """Read, key and parse the files named on standard input until it ends."""
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            labels = read_frame(requests)
        except EOFError:
            return
        items = [read_item(label) for label in labels]
        try:
            write_frame(answers, items)
        except (pickle.PicklingError, TypeError, AttributeError):  # a value that does not pickle
            write_frame(answers, [None if item is None else Item(item.label, item.raw, item.keys)
                                  for item in items])


if __name__ == "__main__":
    main()
