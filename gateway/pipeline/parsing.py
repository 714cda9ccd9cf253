"""The parsing process beside a backlog's writer (see `ahead`): it reads batches of raw
messages on standard input and writes them back parsed on standard output, until its
input ends (the writer is done, or gone however it ended).

It imports `parse` and nothing of the database, so that it starts in a fraction of a
second. A frame is 8 bytes of length, then a pickle: a list of raw messages one way, a
list of the same length the other, each `ParsedMail` or None where parsing raised (the
writer parses that one itself, so that the message is held with its own exception).
Both ends are the gateway's own processes: nothing else writes to these pipes.
"""
from __future__ import annotations

import pickle
import sys
from typing import IO, Any

from gateway.pipeline.parse import ParsedMail, parse

_LENGTH = 8


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


def parse_all(raws: list[bytes]) -> list[ParsedMail | None]:
    """`parse` of each raw message; None for one whose parsing raised."""
    parsed: list[ParsedMail | None] = []
    for raw in raws:
        try:
            parsed.append(parse(raw))
        except Exception:  # noqa: BLE001 - `parse` never raises; should it, the writer holds the message
            parsed.append(None)
    return parsed


def main() -> None:
    """Parse what comes on standard input until it ends."""
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            raws = read_frame(requests)
        except EOFError:
            return
        parsed = parse_all(raws)
        try:
            write_frame(answers, parsed)
        except (pickle.PicklingError, TypeError, AttributeError):  # a value that does not pickle
            write_frame(answers, [None] * len(raws))


if __name__ == "__main__":
    main()
