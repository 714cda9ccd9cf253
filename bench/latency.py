"""Answer latency at a steady rate: from the door's 250 to the acknowledgement arriving
at the relay stand-in, as the customer would wait for it.

New-case mails of the corpus (each with a Message-ID of its own) are offered at a fixed
rate to `gateway serve` on a new SQLite file; the relay stand-in notes when each mail
arrives and which message it answers (In-Reply-To). A mail's latency is the time from its
250 to the first mail the relay receives for its sender in answer to it.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import databases, procs, relay, smtp_load
from bench.backlog import Corpus
from bench.smtp_load import Load, Mail

_MESSAGE_ID = re.compile(rb"^Message-ID:[^\n]*$", re.IGNORECASE | re.MULTILINE)


def new_case_mails(corpus: Corpus, count: int) -> list[Mail]:
    """Up to `count` corpus mails that open a case (no In-Reply-To), each with a fresh
    Message-ID so that none is a duplicate of another run's."""
    mails = []
    for path in sorted(corpus.mailbox.glob("*.eml")):
        raw = path.read_bytes()
        head = raw[:raw.find(b"\n\n")]
        if re.search(rb"^In-Reply-To:", head, re.IGNORECASE | re.MULTILINE):
            continue
        fresh = f"Message-ID: <latency-{len(mails)}@bench.example>".encode()
        mails.append(smtp_load.prepare(_MESSAGE_ID.sub(fresh, raw, count=1)))
        if len(mails) == count:
            break
    return mails


@dataclass
class LatencyRun:
    load: Load
    latencies: list[float] = field(default_factory=list)    # seconds, one per answered mail
    unanswered: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def ms(self, p: float) -> float | None:
        value = smtp_load.percentile(self.latencies, p)
        return None if value is None else value * 1000

    @property
    def achieved_rate(self) -> float:
        """Mails per second really sent: below the offered rate when the door held them up."""
        starts = sorted(s.started for s in self.load.sent)
        return (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 and starts[-1] > starts[0] else 0.0

    def details(self) -> dict[str, object]:
        return {"offered": len(self.load.sent), "accepted": len(self.load.accepted),
                "answered": len(self.latencies), "unanswered": self.unanswered,
                "achieved_rate": round(self.achieved_rate, 1), "outcomes": self.outcomes}


def measure(work: Path, corpus: Corpus, mails: list[Mail], rate: float, timeout: float) -> LatencyRun:
    """Offer `mails` at `rate` per second, then wait up to `timeout` seconds for the answers."""
    url = databases.sqlite_url(work / "gateway.sqlite3")
    smtp_port, relay_port = procs.free_port(), procs.free_port()
    config = procs.write_config(work, url, smtp_port=smtp_port, relay_port=relay_port)
    procs.gateway(config, "import", str(corpus.refdata))
    log = work / "relay.jsonl"
    with procs.relay(work, relay_port, log), procs.serve(config, smtp_port):
        load = asyncio.run(smtp_load.steady(smtp_port, mails, procs.SUPPORT, rate))
        run = LatencyRun(load)
        deadline = time.monotonic() + timeout
        while True:
            answers = _answers(relay.read(str(log)), mails, load)
            if len(answers) == len(load.accepted) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    run.latencies = list(answers.values())
    run.unanswered = len(load.accepted) - len(answers)
    run.outcomes = databases.outcomes(url)
    return run


def _answers(received: list[dict], mails: list[Mail], load: Load) -> dict[int, float]:  # type: ignore[type-arg]
    """For each accepted mail, seconds from its 250 to the first answer to its sender."""
    first: dict[tuple[str, str], float] = {}
    for r in received:
        for rcpt in r["rcpt"]:
            key = (r["in_reply_to"], rcpt)
            first[key] = min(first.get(key, r["t"]), r["t"])
    out = {}
    for s in load.accepted:
        mail = mails[s.index]
        t = first.get((mail.message_id, mail.sender.lower()))
        if t is not None:
            out[s.index] = t - s.answered
    return out
