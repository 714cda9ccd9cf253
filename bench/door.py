"""The SMTP door under 50 concurrent clients, beside the bare floor run the same way.

Each client keeps one connection and sends corpus mails one after another (MAIL, RCPT,
DATA) until the corpus is sent, each mail once. The floor (`shared/bench/door_floor.py`)
commits one SQLite row per message before its 250 and does nothing else. `gateway serve`
runs on SQLite with its pipeline and outbox working meanwhile on what it accepts (its
outbound mail goes to the relay stand-in; the scheduled jobs are off), which is the
state the issue's target speaks of. After the load, the time the pipeline needs to
process the rest is measured too.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import databases, procs, smtp_load
from bench.backlog import Corpus
from bench.smtp_load import Load, Mail


def corpus_mails(corpus: Corpus) -> list[Mail]:
    """Every corpus mail, in send order, ready for the wire."""
    return [smtp_load.prepare(p.read_bytes()) for p in sorted(corpus.mailbox.glob("*.eml"))]


@dataclass
class DoorRun:
    load: Load
    drain_seconds: float | None = None        # from the end of the load to nothing pending
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return len(self.load.accepted) / self.load.seconds

    def latency_ms(self, p: float) -> float | None:
        value = smtp_load.percentile([s.latency for s in self.load.accepted], p)
        return None if value is None else value * 1000

    def details(self) -> dict[str, object]:
        codes: dict[int, int] = {}
        for s in self.load.sent:
            codes[s.code] = codes.get(s.code, 0) + 1
        return {"sent": len(self.load.sent), "answers": codes, "seconds": round(self.load.seconds, 2),
                "drain_seconds": None if self.drain_seconds is None else round(self.drain_seconds, 2),
                "outcomes": self.outcomes}


def floor(shared: Path, work: Path, mails: list[Mail], clients: int) -> DoorRun:
    """door_floor.py under the load."""
    port = procs.free_port()
    args = [procs.PYTHON, str(shared / "bench" / "door_floor.py"), str(port), "--db", str(work / "door-floor.sqlite3")]
    work.mkdir(parents=True, exist_ok=True)
    with procs.running("door-floor", args, port, work):
        return DoorRun(asyncio.run(smtp_load.saturate(port, mails, procs.SUPPORT, clients)))


def gateway(work: Path, corpus: Corpus, mails: list[Mail], clients: int, drain_timeout: float,
            env: dict[str, str] | None = None) -> DoorRun:
    """`gateway serve` on a new SQLite file under the load, then until its pipeline is idle
    (`drain_timeout` seconds at most). `env`: the gateway's environment (default: the
    benchmark's, `procs.CHILD_ENV`)."""
    url = databases.sqlite_url(work / "gateway.sqlite3")
    smtp_port, relay_port = procs.free_port(), procs.free_port()
    config = procs.write_config(work, url, smtp_port=smtp_port, relay_port=relay_port)
    procs.gateway(config, "import", str(corpus.refdata), env=env)
    with procs.relay(work, relay_port, work / "relay.jsonl"), procs.serve(config, smtp_port, env):
        run = DoorRun(asyncio.run(smtp_load.saturate(smtp_port, mails, procs.SUPPORT, clients)))
        run.drain_seconds = wait_processed(url, drain_timeout)
    run.outcomes = databases.outcomes(url)
    return run


def wait_processed(url: str, timeout: float) -> float | None:
    """Seconds until no stored message is pending any more; None after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not databases.scalar(url, "SELECT count(*) FROM inbound_messages WHERE outcome = 'pending'"):
            return time.monotonic() - t0
        time.sleep(0.25)
    return None
