#!/usr/bin/env python3
"""Hostile inputs through the real SMTP door of a running gateway, beside a stream of normal mail.

    .venv/bin/python bench/hostile.py [--postgres URL] [--long] [--json]

Starts `gateway serve` (a child process) on a fresh SQLite file, or on the PostgreSQL
database given (emptied first!), with the demo data and a relay stand-in that, like
Postfix by default, refuses mail over 10,240,000 bytes. While a steady stream of normal
mail opens cases, sends each hostile message (a 20 MB subject of bracketed words, 100,000
tags, 10,000 MIME parts, a body of one 100 kB URL, 100 levels of nesting, a 5.9 MB
description, overlong or NUL-bearing Message-IDs and senders, the signals of automatic
mail, a reused Message-ID...) and prints one line per input: the time from sending it to
its outcome, the outcome, and whether its sender was answered (the relay took the
answer). Then, for the normal stream: the slowest 250, and whether every message was
stored, processed and acknowledged. `--long` uses the full sizes (about a minute);
without it the sizes are small (a few seconds: the test suite runs that). Not a test
itself: figures, and a table to read.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from pathlib import Path

from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = "assistance@editeur.example"
CLAIRE = "claire.martin@boulangeries-lefevre.example"
PAUL = "paul.girard@boulangeries-lefevre.example"
OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute]"
RELAY_LIMIT = 10_240_000  # Postfix's default message_size_limit


# -- the hostile inputs ----------------------------------------------------------------------

@dataclass(frozen=True)
class Input:
    """One hostile message: its name, its sender (the one who may be answered), its bytes."""
    name: str
    sender: str
    raw: bytes
    envelope_from: str | None = None
    again: bool = False  # sent a second time by another path (other Received fields)


def _fold(value: str) -> str:
    """A header value folded into lines of at most about 900 characters (SMTP takes 1,000)."""
    lines, line = [], ""
    for word in value.split(" "):
        if line and len(line) + len(word) > 900:
            lines.append(line)
            line = ""
        line = f"{line} {word}" if line else word
    return "\r\n ".join(lines + [line])


def _mail(subject: str, body: str, sender: str = CLAIRE, headers: str = "", mid: str | None = None,
          ctype: str = "text/plain; charset=utf-8") -> bytes:
    mid = mid if mid is not None else f"<{time.time_ns()}.{os.getpid()}@bench.example>"
    head = (f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {_fold(subject)}\r\nDate: {formatdate()}\r\n"
            f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\nContent-Type: {ctype}\r\n{headers}")
    return (head + "\r\n" + body.replace("\n", "\r\n")).encode("utf-8", "surrogateescape")


def _multipart(subject: str, parts: list[str], boundary: str = "b") -> bytes:
    body = "".join(f"--{boundary}\n{p}\n" for p in parts) + f"--{boundary}--\n"
    return _mail(subject, body, ctype=f"multipart/mixed; boundary={boundary}")


def _wrap(line: str) -> str:
    """A long line as quoted-printable soft-broken lines (SMTP allows 1,000 octets a line)."""
    return "=\n".join(line[i:i + 75] for i in range(0, len(line), 75))


def inputs(long: bool) -> list[Input]:
    """The hostile messages, at full size (`long`) or small."""
    big = (lambda full, small: full) if long else (lambda full, small: small)
    words = " ".join(f"[{chr(97 + i % 26)}]" for i in range(big(20_000_000, 200_000) // 4))
    tags = " ".join(f"[CLIENT C{i}]" for i in range(big(100_000, 2_000)))
    url = "https://example.com/" + "a" * big(100_000, 20_000)
    nested = "".join(f"--n{i}\nContent-Type: multipart/mixed; boundary=n{i + 1}\n\n" for i in range(100))
    nested += "--n100\nContent-Type: text/plain\n\nau fond\n--n100--\n" + "".join(f"--n{i}--\n" for i in reversed(range(100)))
    description = ("Journal : « erreur » & <trace> 🙂 " * 20 + "\n") * big(7_400, 740)  # 5.9 MB
    mid = f"<{'x' * 300}@bench.example>"
    reused = f"<reused.{time.time_ns()}@bench.example>"
    twice = _mail("[Dossier #1] Arrivé par deux chemins", "Le même message, deux fois.\n")
    return [
        Input("subject of bracketed words", CLAIRE, _mail(f"{OPEN} {words}", "Bonjour\n")),
        Input("many tags", CLAIRE, _mail(f"{tags} Titre", "Bonjour\n")),
        Input("many MIME parts", CLAIRE, _multipart(f"{OPEN} Parties", ["Content-Type: text/plain\n\nBonjour"] + [
            f"Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=f{i}.bin\n\nxx"
            for i in range(big(10_000, 1_000))])),
        Input("body of one long URL", CLAIRE, _mail("[Dossier #1] Lien", _wrap(url) + "\n",
                                                     headers="Content-Transfer-Encoding: quoted-printable\r\n")),
        Input("HTML link of one long URL", CLAIRE, _mail("[Dossier #1] Lien HTML", _wrap(f'<a href="{url}">{url}</a>') + "\n",
                                                         ctype="text/html; charset=utf-8",
                                                         headers="Content-Transfer-Encoding: quoted-printable\r\n")),
        Input("100 levels of nesting", CLAIRE, _mail(f"{OPEN} Imbrication", nested, ctype="multipart/mixed; boundary=n0")),
        Input("long description", CLAIRE, _mail(f"{OPEN} Longue description", description)),
        Input("Message-ID of 300 characters", CLAIRE, _mail(f"{OPEN} Identifiant long", "Bonjour\n", mid=mid)),
        Input("NUL in the Message-ID", CLAIRE, _mail(f"{OPEN} Identifiant NUL", "Bonjour\n", mid="<a\x00b@bench.example>")),
        Input("sender of 400 characters", "x" * 380 + "@bench.example",
              _mail(f"{OPEN} Long expéditeur", "Bonjour\n", sender="x" * 380 + "@bench.example")),
        Input("envelope sender of 400 characters", CLAIRE, _mail(f"{OPEN} Enveloppe longue", "Bonjour\n"),
              envelope_from="y" * 380 + "@bench.example"),
        Input("case number too big", CLAIRE, _mail("[Dossier #99999999999] Grand numéro", "Bonjour\n")),
        Input("second Precedence: bulk", CLAIRE, _mail(f"{OPEN} Liste", "Bonjour\n",
                                                       headers="Precedence: normal\r\nPrecedence: bulk\r\n")),
        Input("Precedence: auto_reply", CLAIRE, _mail(f"{OPEN} Absent", "Bonjour\n", headers="Precedence: auto_reply\r\n")),
        Input("List-Unsubscribe without List-Id", CLAIRE, _mail(f"{OPEN} Lettre", "Bonjour\n",
                                                                headers="List-Unsubscribe: <mailto:u@bench.example>\r\n")),
        Input("X-Auto-Response-Suppress: All", CLAIRE, _mail(f"{OPEN} Sans réponse", "Bonjour\n",
                                                             headers="X-Auto-Response-Suppress: All\r\n")),
        Input("first of a reused Message-ID", CLAIRE, _mail(f"{OPEN} Premier", "Bonjour\n", mid=reused)),
        Input("reused Message-ID, other sender", PAUL, _mail(f"{OPEN} Second", "Autre texte\n", sender=PAUL, mid=reused)),
        Input("same message by two paths", CLAIRE, twice),
        Input("same message by two paths", CLAIRE, b"Received: from mx2.bench.example\r\n" + twice, again=True),
        Input("header of many lines", CLAIRE, _mail(f"{OPEN} En-têtes", "Bonjour\n",
                                                    headers="".join(f"X-H{i}: v\r\n" for i in range(big(1_000_000, 20_000))))),
        Input("Cc of many addresses", CLAIRE, _mail(f"{OPEN} Copie", "Bonjour\n", headers="Cc: " + _fold(", ".join(
            f"p{i}@bench.example" for i in range(big(10_000, 1_000)))) + "\r\n")),
        Input("HTML of unclosed tags", CLAIRE, _mail("[Dossier #1] Balises", "<a\n" * big(300_000, 10_000),
                                                     ctype="text/html; charset=utf-8")),
        Input("odd charset and NULs", CLAIRE, _mail(f"{OPEN} Jeu\x00 de caractères", "Bon\x00jour\n",
                                                    ctype='text/plain; charset="x\x00y"')),
    ]


# -- the relay and the gateway ---------------------------------------------------------------

class _Relay:
    """A relay stand-in that refuses, like Postfix by default, a mail over 10,240,000 bytes."""

    def __init__(self, port: int) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=port, data_size_limit=RELAY_LIMIT)

    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(work: Path, url: str, door: int, relay: int) -> Path:
    config = work / "gateway.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[smtp]\nhost = "127.0.0.1"\nport = {door}\n'
        f'[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {relay}\npoll_seconds = 0.05\n'
        f'[support]\naddress = "{SUPPORT}"\n[jobs]\nenabled = false\n', encoding="utf-8")
    return config


def _gateway_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", "from gateway.cli import main; main()", "--config", str(config), *args]


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway serve exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("gateway serve did not open its door")


def send(port: int, raw: bytes, envelope_from: str, rcpt: str = SUPPORT) -> tuple[int | None, float, str]:
    """Send one message through the door: (stored id or None, seconds to the answer, answer)."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as smtp:
        smtp.ehlo()
        code, answer = smtp.mail(envelope_from)
        if code == 250:
            code, answer = smtp.rcpt(rcpt)
        if code == 250:
            code, answer = smtp.data(raw)
    seconds = time.perf_counter() - started
    reply = answer.decode(errors="replace")
    stored = int(reply.rsplit(" ", 1)[-1]) if code == 250 and "queued as" in reply else None
    return stored, seconds, f"{code} {reply}"


# -- watching outcomes -----------------------------------------------------------------------

def _outcome(engine: Engine, inbound_id: int) -> tuple[str, list[str]]:
    with engine.connect() as connection:
        row = connection.execute(text("SELECT outcome, reasons FROM inbound_messages WHERE id = :i"),
                                 {"i": inbound_id}).first()
    reasons = row.reasons if isinstance(row.reasons, list) else json.loads(row.reasons or "[]")
    return row.outcome, reasons


def wait_outcome(engine: Engine, inbound_id: int, timeout: float) -> tuple[str, list[str]]:
    """The outcome of a stored message, once it is no longer pending (or "pending" at timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome, reasons = _outcome(engine, inbound_id)
        if outcome != "pending" or time.monotonic() > deadline:
            return outcome, reasons
        time.sleep(0.01)


def answered(engine: Engine, inbound_id: int, sender: str, timeout: float) -> str:
    """Whether the sender got an answer about this message: "yes" once the relay took it,
    "refused by relay" when it would not, "no" when none was written."""
    deadline = time.monotonic() + timeout
    query = text("SELECT d.status FROM deliveries d JOIN outbound_messages m ON m.id = d.message_id "
                 "WHERE m.inbound_id = :i AND lower(d.recipient) = :r")
    while True:
        with engine.connect() as connection:
            states = [r.status for r in connection.execute(query, {"i": inbound_id, "r": sender.lower()})]
        if not states:
            return "no"
        if "pending" not in states or time.monotonic() > deadline:
            return "yes" if "sent" in states else "refused by relay" if "failed" in states else "pending"
        time.sleep(0.05)


# -- the steady stream -----------------------------------------------------------------------

@dataclass
class Stream:
    """Normal mail sent at a steady pace while the hostile inputs go in."""
    port: int
    interval: float
    latencies: list[float] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            raw = _mail(f"{OPEN} Demande courante {n}", f"Bonjour,\n\nDemande normale numéro {n}.\n", sender=PAUL)
            stored, seconds, answer = send(self.port, raw, PAUL)
            self.latencies.append(seconds)
            if stored is None:
                self.refused.append(answer)
            else:
                self.ids.append(stored)
            self.stop.wait(self.interval)


# -- the run ---------------------------------------------------------------------------------

@dataclass
class Line:
    input: str
    seconds_to_250: float
    seconds_to_outcome: float | None
    outcome: str
    answered: str
    reasons: list[str]


@dataclass
class Report:
    database: str
    lines: list[Line]
    normal_sent: int
    normal_250_max_seconds: float
    normal_250_median_seconds: float
    normal_lost: int  # not stored, not processed, or not acknowledged

    def table(self) -> str:
        rows = [f"database: {self.database}",
                f"{'input':42} {'250':>7} {'outcome':>8}  {'outcome':10}  {'answered':16}  reasons"]
        for line in self.lines:
            seconds = "-" if line.seconds_to_outcome is None else f"{line.seconds_to_outcome:.2f} s"
            reasons = "; ".join(line.reasons)
            rows.append(f"{line.input:42} {line.seconds_to_250:5.2f} s {seconds:>8}  {line.outcome:10}  {line.answered:16}  "
                        f"{reasons[:160] + ('…' if len(reasons) > 160 else '')}")
        rows.append(f"normal stream: {self.normal_sent} messages, 250 in {self.normal_250_median_seconds:.3f} s "
                    f"(median), {self.normal_250_max_seconds:.3f} s (max); lost: {self.normal_lost}")
        return "\n".join(rows)


def run(database_url: str, long: bool = False, interval: float = 0.1,
        log: Callable[[str], None] = lambda _line: None) -> Report:
    """Start a gateway on `database_url` (empty), send every input beside the normal
    stream, and report what became of each."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = database_url or f"sqlite:///{work / 'gateway.sqlite3'}"
        door, relay = _free_port(), _Relay(_free_port())
        config = _config(work, url, door, relay.controller.port)
        subprocess.run(_gateway_command(config, "import", str(ROOT / "config" / "sample-data.toml")),
                       check=True, capture_output=True)
        relay.controller.start()
        with open(work / "serve.log", "wb") as serve_log:
            process = subprocess.Popen(_gateway_command(config, "serve"), stdout=serve_log, stderr=serve_log)
        engine = create_engine(url)
        try:
            _wait_port(door, process)
            return _measure(engine, url, door, long, interval, log)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            engine.dispose()
            relay.controller.stop()


def _measure(engine: Engine, url: str, door: int, long: bool, interval: float,
             log: Callable[[str], None]) -> Report:
    first, _, answer = send(door, _mail(f"{OPEN} Dossier de départ", "Bonjour\n"), CLAIRE)
    assert first is not None, answer
    wait_outcome(engine, first, 60)
    stream = Stream(door, interval)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    lines = []
    try:
        for item in inputs(long):
            stored, to_250, answer = send(door, item.raw, item.envelope_from or item.sender)
            started = time.perf_counter()
            name = item.name + (" (again)" if item.again else "")
            if stored is None:
                lines.append(Line(name, to_250, None, "not stored", "-", [answer]))
                continue
            outcome, reasons = wait_outcome(engine, stored, 120)
            line = Line(name, to_250, time.perf_counter() - started,
                        outcome, answered(engine, stored, item.sender, 60), reasons)
            log(f"{line.input}: {line.outcome} in {line.seconds_to_outcome:.2f} s")
            lines.append(line)
    finally:
        stream.stop.set()
        thread.join(timeout=300)
    lost = len(stream.refused) + sum(
        wait_outcome(engine, i, 120)[0] != "created" or answered(engine, i, PAUL, 60) != "yes" for i in stream.ids)
    latencies = sorted(stream.latencies) or [0.0]
    return Report(url.split(":", 1)[0].split("+")[0], lines, len(stream.latencies), latencies[-1],
                  latencies[len(latencies) // 2], lost)


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postgres", help="also run on this PostgreSQL database URL (emptied!)")
    ap.add_argument("--long", action="store_true", help="full sizes (20 MB subject, 100,000 tags...)")
    ap.add_argument("--json", action="store_true", help="one JSON object per database")
    args = ap.parse_args()
    urls = [""] + ([args.postgres] if args.postgres else [])
    for url in urls:
        if url:
            reset_postgres(url)
        report = run(url, args.long, log=lambda line: print(line, file=sys.stderr, flush=True))
        print(json.dumps(asdict(report)) if args.json else report.table() + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
