"""The door's DATA reader (receive/data.py) against aiosmtpd's own, line by line: the same
message, the same refusal, and what the client sent after the final dot left unread."""
from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from aiosmtpd.smtp import _DataState
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gateway.receive.data import LeanData

LINE_LIMIT = LeanData.line_length_limit  # 1001 bytes with the CRLF
NEXT = b"MAIL FROM:<next@example.com>\r\n"  # a pipelined command after the final dot


async def reference(reader: asyncio.StreamReader, size_limit: int | None) -> tuple[bytes, _DataState]:
    """aiosmtpd 1.4's smtp_DATA loop (a line per read, the stream's limit at one line),
    dot-stuffing undone as its handler does."""
    lines: list[bytes] = []
    fragments: list[bytes] = []
    size, state = 0, _DataState.NOMINAL
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as e:
            state = _DataState.TOO_LONG if state == _DataState.NOMINAL else state
            lines.clear()
            line = await reader.read(e.consumed)
        if not fragments and line == b".\r\n":
            break
        size += len(line)
        if state == _DataState.NOMINAL and size_limit and size > size_limit:
            state = _DataState.TOO_MUCH
            lines.clear()
        fragments.append(line)
        if line.endswith(b"\r\n"):
            if state == _DataState.NOMINAL:
                whole = b"".join(fragments)
                if len(whole) > LINE_LIMIT:
                    state, lines = _DataState.TOO_LONG, []
                else:
                    lines.append(whole[1:] if whole.startswith(b".") else whole)
            fragments.clear()
    return (b"".join(lines) if state == _DataState.NOMINAL else b""), state


class _Transport:
    """Enough of a transport for the reader: it is there, and never paused for real."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


Gathered = tuple[bytes, _DataState, bytes, int]  # content, state, what is left unread, the stream's limit


def gathered(stream: bytes, cuts: list[int], size_limit: int | None) -> tuple[Gathered, Gathered]:
    """Both readers on `stream`, fed in the pieces `cuts` make (the door's, aiosmtpd's):
    what each returned and left."""
    async def run() -> tuple[Gathered, Gathered]:
        door = LeanData.__new__(LeanData)
        door.transport, door.data_size_limit = _Transport(), size_limit  # type: ignore[assignment]
        door._reader = asyncio.StreamReader(limit=LINE_LIMIT)
        door._reader.set_transport(_Transport())  # type: ignore[arg-type]
        plain = asyncio.StreamReader(limit=LINE_LIMIT)
        plain.set_transport(_Transport())  # type: ignore[arg-type]

        async def feed() -> None:
            for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
                door._reader.feed_data(stream[start:end])
                plain.feed_data(stream[start:end])
                await asyncio.sleep(0)

        feeding = asyncio.ensure_future(feed())
        content, state = await door._gather()
        expected = await reference(plain, size_limit)
        await feeding
        assert state is not None
        left, limit = bytes(door._reader._buffer), door._reader._limit  # type: ignore[attr-defined]
        return (bytes(content), state, left, limit), (*expected, bytes(plain._buffer), LINE_LIMIT)  # type: ignore[attr-defined]
    return asyncio.run(run())


_PIECES = st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b"word. ", b"=2E", b"\xc3\xa9", b" "])
_LINES = st.lists(st.one_of(st.lists(_PIECES, max_size=12).map(b"".join),
                            st.integers(min_value=990, max_value=1010).map(lambda n: b"x" * n),
                            st.integers(min_value=1, max_value=70_000).map(lambda n: b"QUJD" * (n // 4)),
                            # a line ending in a dot or a CR beyond the stream's limit during DATA
                            st.tuples(st.integers(min_value=65_530, max_value=65_540), st.sampled_from([b".", b"\r"]))
                            .map(lambda t: b"x" * t[0] + t[1])),
                  max_size=30)


@hypothesis_settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(lines=_LINES, seed=st.integers(0, 2**32), size_limit=st.sampled_from([None, 0, 40, 3000, 100_000]))
def test_data_reads_as_aiosmtpd_reads_it(lines: list[bytes], seed: int, size_limit: int | None) -> None:
    stuffed = [b"." + line if line.startswith(b".") else line for line in b"\r\n".join(lines).split(b"\r\n")]
    stream = (b"".join(line + b"\r\n" for line in stuffed) if lines else b"") + b".\r\n" + NEXT
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(stream)), min(rng.randint(0, 8), len(stream) - 1)))
    new, old = gathered(stream, cuts, size_limit)
    assert new[2] == old[2] == NEXT, "what follows the final dot stays for the next command"
    assert new[3] == LINE_LIMIT, "the stream's limit is the command line's again"
    if {new[1], old[1]} == {_DataState.TOO_LONG, _DataState.TOO_MUCH}:
        return  # too big and a line too long: either refusal says so
    assert new[:2] == old[:2]


def test_a_dot_alone_at_the_start_ends_an_empty_message() -> None:
    assert gathered(b".\r\n" + NEXT, [1], None)[0] == (b"", _DataState.NOMINAL, NEXT, LINE_LIMIT)


def test_stuffed_dots_and_lines_ending_in_a_dot() -> None:
    stream = b"..start\r\nend of sentence.\r\n..\r\n...x\r\n.\r\n" + NEXT
    content, state, left, _ = gathered(stream, [3, 12, 19], None)[0]
    assert (content, state, left) == (b".start\r\nend of sentence.\r\n.\r\n..x\r\n", _DataState.NOMINAL, NEXT)


# MAIL FROM and RCPT TO: the door's address reader against aiosmtpd's.
_ADDRESS_PIECES = st.sampled_from(["a", "Z", "9", ".", "..", "-", "+", "_", "'", "!", "~", "=", "é", " ", "\t", "(", ")",
                           '"', "\\", "[", "]", ":", ",", ";", "@", "<", ">", "x.y", "1.2.3.4"])
_ARGS = st.one_of(
    st.builds(lambda lead, local, domain, tail: f"{lead}<{local}@{domain}>{tail}",
              st.sampled_from(["", "", " "]), st.lists(_ADDRESS_PIECES, max_size=6).map("".join),
              st.lists(_ADDRESS_PIECES, max_size=6).map("".join),
              st.sampled_from(["", " SIZE=1000", "  BODY=8BITMIME SIZE=5", "\tX", "(c) SIZE=2", " (c)", "x", " ",
                               " \u00a0SIZE=3", ">"])),
    st.lists(_ADDRESS_PIECES, max_size=12).map("".join))


@given(arg=_ARGS, limit=st.sampled_from([0, 3, 64]))
@hypothesis_settings(max_examples=600, deadline=None)
def test_addresses_are_read_as_aiosmtpd_reads_them(arg: str, limit: int) -> None:
    from aiosmtpd.smtp import SMTP
    door = LeanData.__new__(LeanData)
    door.local_part_limit = limit

    def answer(read: Callable[[str], object]) -> object:
        try:
            return read(arg)
        except Exception as error:  # noqa: BLE001 - the stdlib's parser fails on some input: the same way
            return type(error)
    assert answer(door._getaddr) == answer(lambda a: SMTP._getaddr(door, a))


def test_a_plain_address_skips_the_header_parser() -> None:
    """The fast reading is taken for what MTAs send (else the test above proves nothing)."""
    from gateway.receive import data
    for arg in ("<jean.dupont@client-a.example>", "<support@editeur.example> SIZE=1200 BODY=8BITMIME"):
        assert data._PLAIN_ADDRESS.match(arg) is not None
    door = LeanData.__new__(LeanData)
    door.local_part_limit = 0
    assert door._getaddr("<a.b@c.example> SIZE=10") == ("a.b@c.example", "SIZE=10")
