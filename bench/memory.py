"""Memory of `gateway serve`: what it holds at rest, and what taking one 25 MB message with
attachments adds to it, read from /proc of the serving process and of the worker processes
it started (procs.memory).

The figures are sums of Pss, the proportional set size: the workers are forked from the
serving process and share its pages until they write to them (and all share the libraries),
so that VmRSS and VmHWM, which count a shared page once in every process, add up to more
than the machine gives them. Pss has no peak of its own: it is read every 20 ms while the
big message is taken, and the highest sum kept. The summed peaks (VmHWM), an upper bound
that counts shared pages once per process, are in the notes and the JSON.

At rest: the gateway started on a new SQLite file with the corpus's reference data, its
scheduled jobs on (as an operator runs it), idle for a few seconds. Then a customer opens
a case with three files making a 25 MB message: the door takes it, the pipeline stores the
files and writes the acknowledgement (which carries the files that fit
`max_attachment_bytes`), the outbox sends it to the relay stand-in. The cost is the highest
sum over all of that minus the sum at rest just before.
"""
from __future__ import annotations

import asyncio
import random
import threading
import time
import tomllib
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from bench import databases, procs, relay, smtp_load
from bench.backlog import Corpus

MB = 1_000_000


def big_message(sender: str, client: str, serial: str, size: int = 25 * MB) -> bytes:
    """A new-case mail of about `size` bytes: a text and three incompressible files (a log,
    a PDF, a screenshot) sharing what base64 leaves of `size`."""
    rng = random.Random(42)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = procs.SUPPORT
    msg["Subject"] = f"[CLIENT {client}] [SERIE {serial}] [CRITICITE haute] Export complet en échec"
    msg["Message-ID"] = "<big-message@bench.example>"
    msg.set_content("Bonjour,\n\nl'export complet échoue ; voici le journal, le rapport et une capture.\n")
    decoded = int((size - 4000) * 57 / 78)     # base64 lines: 76 characters for 57 bytes, plus CRLF
    for share, name, maintype, subtype in ((0.55, "export.log", "application", "octet-stream"),
                                           (0.33, "rapport.pdf", "application", "pdf"),
                                           (0.12, "capture.png", "image", "png")):
        msg.add_attachment(rng.randbytes(int(decoded * share)), maintype=maintype, subtype=subtype,
                           filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@dataclass
class MemoryRun:
    rest_peak: int             # VmHWM after the quiet start
    rest: int                  # VmRSS just before the big message
    peak: int                  # VmHWM once the big message was answered
    message_size: int
    answered: bool
    seconds: float             # from sending the message to its answer at the relay
    rest_pss: int = 0          # Pss just before the big message
    peak_pss: int = 0          # the highest Pss sampled while the message was taken
    members: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # per process

    @property
    def cost(self) -> int:
        return self.peak - self.rest

    @property
    def cost_pss(self) -> int:
        return self.peak_pss - self.rest_pss


class PssSampler(threading.Thread):
    """The highest sum of Pss over `serve`'s processes, read every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.at_peak: dict[str, dict[str, int]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            members = procs.members(self.pid)
            total = sum(m["Pss"] for m in members.values())
            if total > self.peak:
                self.peak, self.at_peak = total, members

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def first_contact(corpus: Corpus) -> tuple[str, str, str]:
    """(address, client code, serial) of the first contact in the corpus's reference data."""
    data = tomllib.loads(corpus.refdata.read_text(encoding="utf-8"))
    contact = data["contacts"][0]
    serial = next(lic["serial"] for lic in data["licences"] if lic["client"] == contact["client"])
    return contact["email"], contact["client"], serial


def measure(work: Path, corpus: Corpus, settle: float, timeout: float) -> MemoryRun:
    """Start serve, let it settle `settle` seconds, read its memory, send the big message."""
    url = databases.sqlite_url(work / "gateway.sqlite3")
    smtp_port, relay_port = procs.free_port(), procs.free_port()
    config = procs.write_config(work, url, smtp_port=smtp_port, relay_port=relay_port, jobs=True)
    procs.gateway(config, "import", str(corpus.refdata))
    sender, client, serial = first_contact(corpus)
    raw = big_message(sender, client, serial)
    mail = smtp_load.prepare(raw)
    log = work / "relay.jsonl"
    with procs.relay(work, relay_port, log), procs.serve(config, smtp_port) as process:
        time.sleep(settle)
        at_rest = procs.memory(process.pid)
        rest_members = procs.members(process.pid)
        sampler = PssSampler(process.pid)
        sampler.start()
        t0 = time.monotonic()
        load = asyncio.run(smtp_load.saturate(smtp_port, [mail], procs.SUPPORT, clients=1))
        answered = False
        while load.accepted and time.monotonic() - t0 < timeout:
            if any(r["in_reply_to"] == mail.message_id for r in relay.read(str(log))):
                answered = True
                break
            time.sleep(0.2)
        seconds = time.monotonic() - t0
        time.sleep(0.5)   # the outbox marks the delivery sent after the relay's 250
        sampler.stop()
        after = procs.memory(process.pid)
        members = {"rest": rest_members, "pss_peak": sampler.at_peak, "after": procs.members(process.pid)}
    return MemoryRun(at_rest["VmHWM"], at_rest["VmRSS"], after["VmHWM"], len(raw), answered, seconds,
                     at_rest["Pss"], max(sampler.peak, after["Pss"]), members)
