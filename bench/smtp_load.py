"""SMTP load from the client's side: many connections sending mail, each message timed
from the final "." to the server's answer (the end-of-DATA → 250 latency a sending MTA sees).

A minimal asyncio client (EHLO, then MAIL / RCPT / DATA on one connection as long as there
is mail to send) so that the timestamps are taken exactly around the final dot, with the
body already handed to the kernel. `saturate` keeps N clients busy (closed loop);
`steady` sends at a fixed rate whatever the answers take (open loop).
"""
from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr

_LINE_END = re.compile(rb"\r?\n")


@dataclass(frozen=True)
class Mail:
    """One message ready for DATA: envelope sender, Message-ID, dot-stuffed CRLF body."""
    sender: str
    message_id: str
    data: bytes


def prepare(raw: bytes) -> Mail:
    """A raw message as the wire wants it: CRLF lines, leading dots doubled."""
    end = raw.find(b"\n\n")
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:end if end >= 0 else len(raw)])
    sender = parseaddr(str(headers.get("From") or ""))[1] or "bench@localhost"
    lines = _LINE_END.split(raw)
    if lines and lines[-1] == b"":
        lines.pop()
    data = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines) + b"\r\n"
    return Mail(sender, str(headers.get("Message-ID") or "").strip(), data)


@dataclass
class Sent:
    """What happened to one message: when it was sent, the final answer's code and delay."""
    index: int
    started: float          # time.monotonic() at MAIL FROM
    code: int = 0
    latency: float = 0.0    # seconds from the final "." to the answer
    answered: float = 0.0   # time.monotonic() at the answer


@dataclass
class Load:
    sent: list[Sent] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def accepted(self) -> list[Sent]:
        return [s for s in self.sent if s.code == 250]


class Client:
    """One SMTP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Client:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        # drain() then waits until every byte is with the kernel, so the clock starts at the dot.
        writer.transport.set_write_buffer_limits(high=0)
        client = cls(reader, writer)
        await client.reply()
        await client.command(b"EHLO bench.example")
        return client

    async def reply(self) -> int:
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            if line[3:4] != b"-":
                return int(line[:3])

    async def command(self, line: bytes) -> int:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def send(self, mail: Mail, rcpt: str, sent: Sent) -> None:
        """One transaction; fills `sent` (code 0: refused before DATA)."""
        if await self.command(f"MAIL FROM:<{mail.sender}> BODY=8BITMIME".encode()) != 250:
            return
        if await self.command(f"RCPT TO:<{rcpt}>".encode()) != 250:
            await self.command(b"RSET")
            return
        if await self.command(b"DATA") != 354:
            return
        self.writer.write(mail.data)
        await self.writer.drain()
        t0 = time.monotonic()
        self.writer.write(b".\r\n")
        await self.writer.drain()
        sent.code = await self.reply()
        sent.answered = time.monotonic()
        sent.latency = sent.answered - t0

    async def close(self) -> None:
        try:
            await self.command(b"QUIT")
        except (ConnectionError, OSError):
            pass
        self.writer.close()


async def saturate(port: int, mails: list[Mail], rcpt: str, clients: int = 50) -> Load:
    """Send every mail once through `clients` connections kept busy; the load's seconds run
    from the first MAIL to the last answer."""
    load = Load()
    queue = iter(range(len(mails)))
    connections = await asyncio.gather(*(Client.open(port) for _ in range(clients)))

    async def work(client: Client) -> None:
        for index in queue:
            sent = Sent(index, time.monotonic())
            load.sent.append(sent)
            await client.send(mails[index], rcpt, sent)

    t0 = time.monotonic()
    await asyncio.gather(*(work(c) for c in connections))
    load.seconds = time.monotonic() - t0
    await asyncio.gather(*(c.close() for c in connections))
    return load


async def steady(port: int, mails: list[Mail], rcpt: str, rate: float, clients: int = 50) -> Load:
    """Start mail i at `i / rate` seconds, on whichever of `clients` connections is free
    (a late start is recorded as such: the rate is offered, not forced)."""
    load = Load()
    idle: asyncio.Queue[Client] = asyncio.Queue()
    for client in await asyncio.gather(*(Client.open(port) for _ in range(clients))):
        idle.put_nowait(client)

    async def one(client: Client, index: int) -> None:
        sent = Sent(index, time.monotonic())
        load.sent.append(sent)
        try:
            await client.send(mails[index], rcpt, sent)
        finally:
            idle.put_nowait(client)

    t0 = time.monotonic()
    tasks = []
    for index in range(len(mails)):
        await asyncio.sleep(max(0.0, t0 + index / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(await idle.get(), index)))
    await asyncio.gather(*tasks)
    load.seconds = time.monotonic() - t0
    for _ in range(clients):
        await (await idle.get()).close()
    return load


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]
