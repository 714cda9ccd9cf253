"""The backlog: `gateway ingest DIR` on the corpus, against the floor, in the same run.

The floor (`shared/bench/bare_limit.py`) parses every mail and commits one SQLite row
per message, with threading by In-Reply-To: the least any Python program storing mail can
do. The gateway does all its work: store every raw message, parse, strip quotes, route,
open or append to cases, render the answers and write the outbox. Both are timed from
the outside, start-up included (a few tens of milliseconds for the floor, the imports and
the schema check for the gateway), so the figure is what an operator's replay costs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench import databases, procs


@dataclass(frozen=True)
class Corpus:
    mailbox: Path
    refdata: Path
    count: int
    new_threads: int


def make_corpus(shared: Path, work: Path, count: int, seed: int) -> Corpus:
    """The corpus and the reference data of its senders (shared/bench/make_corpus.py)."""
    mailbox, refdata = work / "mailbox", work / "refdata.toml"
    result = procs.timed([procs.PYTHON, str(shared / "bench" / "make_corpus.py"), "--count", str(count),
                          "--seed", str(seed), "--out", str(mailbox), "--refdata", str(refdata), "--clean"],
                         cwd=work)
    if result.returncode != 0:
        raise RuntimeError(f"make_corpus.py failed: {result.stderr.strip()[-500:]}")
    stats = json.loads(result.stdout)
    return Corpus(mailbox, refdata, stats["messages"], stats["new_threads"])


@dataclass
class Rate:
    """A run over the corpus: wall and CPU seconds, messages per wall second, outcomes."""
    messages: int
    seconds: float
    cpu: float
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    def details(self) -> dict[str, object]:
        return {"messages": self.messages, "seconds": round(self.seconds, 2), "cpu_seconds": round(self.cpu, 2),
                "outcomes": self.outcomes}


def floor(shared: Path, corpus: Corpus, work: Path) -> Rate:
    """bare_limit.py on the corpus, timed from the outside like the gateway."""
    result = procs.timed([procs.PYTHON, str(shared / "bench" / "bare_limit.py"), str(corpus.mailbox),
                          "--db", str(work / "floor.sqlite3")], cwd=work)
    if result.returncode != 0:
        raise RuntimeError(f"bare_limit.py failed: {result.stderr.strip()[-500:]}")
    inside = json.loads(result.stdout)
    rate = Rate(inside["messages"], result.seconds, result.cpu)
    rate.outcomes = {"tickets": inside["tickets"], "followups": inside["followups_on_existing"],
                     "own_loop_msg_per_s": inside["msg_per_s"]}
    return rate


def prepare(work: Path, url: str, corpus: Corpus) -> Path:
    """A configuration on `url` with the corpus's reference data imported; returns it."""
    config = procs.write_config(work, url)
    procs.gateway(config, "import", str(corpus.refdata))
    return config


def ingest(config: Path, url: str, corpus: Corpus) -> Rate:
    """`gateway ingest MAILBOX`, timed; the outcomes are read from the database after."""
    before = int(databases.scalar(url, "SELECT coalesce(max(id), 0) FROM inbound_messages") or 0)
    result = procs.gateway(config, "ingest", str(corpus.mailbox))
    outcomes = databases.outcomes(url, after=before)
    return Rate(sum(outcomes.values()), result.seconds, result.cpu, outcomes)
