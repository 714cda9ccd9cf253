"""A database with years of history: the backlog into it, the reminders pass over it, and
a `[SUIVI]` answer for a client with a thousand cases.

`build` imports the corpus's reference data and writes the history (bench/history.py);
the backlog then runs exactly as on the empty database, so the ratio of the two rates is
what the history costs. The reminders pass runs `gateway jobs run reminders` with the
clock the history was written for; the run is cut at a cap (twice the target by
default) so that a slow pass cannot stretch the benchmark: its length is then estimated
from the pace it kept, and the figure says so.
"""
from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import backlog, databases, history, procs
from bench.backlog import Corpus


@dataclass
class Scale:
    """One backend's database with history, and the clock it was written for."""
    url: str
    config: Path
    now: dt.datetime
    filled: history.Filled


def build(work: Path, url: str, corpus: Corpus, size: history.History, now: dt.datetime) -> Scale:
    config = backlog.prepare(work, url, corpus)
    return Scale(url, config, now, history.fill(url, size, now))


@dataclass
class RemindersRun:
    due: int
    done: int
    seconds: float           # measured, or estimated when cut
    cut: bool
    cpu: float
    progress: list[tuple[float, int]] = field(default_factory=list)

    def details(self) -> dict[str, object]:
        return {"due": self.due, "done": self.done, "cut": self.cut, "cpu_seconds": round(self.cpu, 2),
                "progress": [(round(t, 1), n) for t, n in self.progress[::max(1, len(self.progress) // 20)]]}


def reminders(scale: Scale, due: int, cap: float) -> RemindersRun:
    """`gateway jobs run reminders --now <history's clock>`, watched from the database."""
    count = "SELECT count(*) FROM case_reminders"
    before = int(databases.scalar(scale.url, count) or 0)
    progress: list[tuple[float, int]] = []
    t0 = time.perf_counter()

    def sample() -> None:
        progress.append((time.perf_counter() - t0, int(databases.scalar(scale.url, count) or 0) - before))

    result = procs.timed([procs.GATEWAY, "--config", str(scale.config), "jobs", "run", "reminders",
                          "--now", scale.now.isoformat()], scale.config.parent, cap, sample)
    if not result.cut and result.returncode != 0:
        raise RuntimeError(f"gateway jobs run reminders exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-500:]}")
    done = int(databases.scalar(scale.url, count) or 0) - before
    seconds = _estimate(progress, due) if result.cut else result.seconds
    return RemindersRun(due, done, seconds, result.cut, result.cpu, progress)


def _estimate(progress: list[tuple[float, int]], due: int) -> float:
    """The whole pass's length at the pace kept from the first reminder to the cut."""
    started = [(t, n) for t, n in progress if n > 0]
    if len(started) < 2 or started[-1][1] == started[0][1]:
        return float("inf")
    (t1, n1), (t2, n2) = started[0], started[-1]
    return t2 + (due - n2) * (t2 - t1) / (n2 - n1)


def suivi_message(contact: str) -> bytes:
    return (f"From: {contact}\r\nTo: {procs.SUPPORT}\r\nSubject: [SUIVI]\r\n"
            "Message-ID: <suivi@bench.example>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0100\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Bonjour, où en sont nos dossiers ?\r\n").encode()


@dataclass
class SuiviRun:
    seconds: list[float]
    outcomes: list[object]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    def details(self) -> dict[str, object]:
        return {"runs_ms": [round(s * 1000, 1) for s in self.seconds], "outcomes": self.outcomes}


def suivi(scale: Scale, repeat: int) -> SuiviRun:
    """The pipeline's processing of one `[SUIVI]` from the big client's contact (bench/probe.py)."""
    path = scale.config.parent / "suivi.eml"
    path.write_bytes(suivi_message(scale.filled.big_client_contact))
    result = procs.timed([procs.PYTHON, "-m", "bench.probe", str(scale.config), str(path), "--repeat", str(repeat)],
                         cwd=scale.config.parent)
    if result.returncode != 0:
        raise RuntimeError(f"bench.probe failed: {result.stderr.strip()[-800:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return SuiviRun(data["seconds"], data["outcomes"])
