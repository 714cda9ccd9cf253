"""`python -m bench` (or `bench/run`): every figure of the issue "Speed", each beside a
baseline measured in the same invocation, and which targets are met.

    bench/run [--quick] [--only PART,…] [--postgres URL|none] [--history BACKENDS] [--json PATH]

Parts: backlog, history, reminders, suivi, door, latency, memory. The door, the
latencies and the memory are measured first, while the disk is quiet. The history parts
share one database per backend holding a million cases (bench/history.py), written next,
in parallel; the backlog into it runs right after the same backlog into an empty
database, so that both rates are measured seconds apart. Progress goes to standard error,
the table to standard output. Exit status: 0 when every part asked for ran (whether or
not its targets are met), 1 when one failed, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import backlog, databases, door, history, latency, memory, procs, report, scale
from bench.report import Figure, at_least, below, both, ratio_at_least, ratio_at_most

PARTS = ("backlog", "history", "reminders", "suivi", "door", "latency", "memory")
# The table's order: the issue's, whatever order the parts ran in.
ORDER = [f"{part}.{backend}" for part in ("backlog", "history") for backend in ("sqlite", "postgresql")] + [
    "door.rate", "door.p50", "door.p99", "latency.p50", "latency.p99", "memory.rest", "memory.message"] + [
    f"{part}.{backend}" for part in ("reminders", "suivi") for backend in ("sqlite", "postgresql")]
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/"
MB = 1_000_000


@dataclass(frozen=True)
class Sizes:
    corpus: int
    history_cases: int
    big_client_cases: int
    door_clients: int
    latency_rate: float
    latency_seconds: float
    reminders_cap: float
    suivi_repeat: int
    settle: float          # seconds `serve` idles before its memory at rest is read
    wait: float            # at most this long for a pipeline to catch up or answers to arrive
    backlog_pairs: int     # the floor then the gateway, back to back, this many times per backend


FULL = Sizes(corpus=2000, history_cases=1_000_000, big_client_cases=1000, door_clients=50,
             latency_rate=50, latency_seconds=20, reminders_cap=60, suivi_repeat=5, settle=5, wait=120,
             backlog_pairs=3)
QUICK = Sizes(corpus=200, history_cases=10_000, big_client_cases=1000, door_clients=50,
              latency_rate=50, latency_seconds=2, reminders_cap=30, suivi_repeat=3, settle=2, wait=60,
              backlog_pairs=1)


class Bench:
    """One invocation: its options, work folder, databases, figures and errors."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.parts = args.only
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gateway-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.figures: list[Figure] = []
        self.errors: dict[str, str] = {}
        self.notes: list[str] = []
        self.t0 = time.monotonic()
        self.postgres: databases.Postgres | None = None
        self.corpus: backlog.Corpus | None = None
        self.history_size = history.History(self.sizes.history_cases, self.sizes.big_client_cases)
        self.busiest = os.getloadavg()[0]
        threading.Thread(target=self._watch_load, daemon=True).start()

    def _watch_load(self) -> None:
        """Keep the highest one-minute load average seen: the table says when it was busy."""
        while True:
            self.busiest = max(self.busiest, os.getloadavg()[0])
            time.sleep(5)

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.0f}s] {text}", file=sys.stderr, flush=True)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        self.say(f"{figure.name}: {report.number(figure.value, figure.unit)}"
                 + (f" (baseline {report.number(figure.baseline, figure.unit)})" if figure.baseline else ""))

    def part(self, name: str, step: Callable[[], None]) -> None:
        """Run one part; an error is kept for the report and the next part goes on."""
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - one broken part must not hide the others
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            self.say(f"{name} failed: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)

    def backends(self) -> list[str]:
        return ["sqlite"] + (["postgresql"] if self.postgres is not None else [])

    def url(self, backend: str, purpose: str) -> str:
        if backend == "sqlite":
            return databases.sqlite_url(self.work / purpose / "gateway.sqlite3")
        assert self.postgres is not None
        return self.postgres.create(purpose)


def connect_postgres(bench: Bench) -> None:
    url = bench.args.postgres
    if url == "none":
        return
    server = databases.Postgres(url)
    try:
        version = server.check()
    except Exception as exc:
        if url != DEFAULT_POSTGRES:
            raise SystemExit(f"bench: PostgreSQL at {url} cannot be reached: {exc}") from exc
        bench.notes.append(f"PostgreSQL not reachable at {url}: its figures were skipped")
        return
    bench.postgres = server
    bench.say(f"PostgreSQL {version} at {url}")


def run_backlog(bench: Bench, built: dict[str, scale.Scale]) -> None:
    """Per backend, the floor then `gateway ingest` into an empty database, back to back,
    `backlog_pairs` times (the figure is the pair whose ratio is the median: this machine's
    speed drifts within a minute), then the backlog into the database with history, right
    after, against the median of the empty runs."""
    assert bench.corpus is not None
    for backend in bench.backends():
        if "backlog" in bench.parts or backend in built:
            bench.part(f"backlog.{backend}", functools.partial(_backlogs, bench, backend, built.get(backend)))


def _backlogs(bench: Bench, backend: str, history_db: scale.Scale | None) -> None:
    assert bench.corpus is not None
    pairs: list[tuple[backlog.Rate, backlog.Rate]] = []
    for n in range(bench.sizes.backlog_pairs if "backlog" in bench.parts else 1):
        floor = None
        if "backlog" in bench.parts:
            folder = bench.work / f"floor-{backend}-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            floor = backlog.floor(bench.args.shared, bench.corpus, folder)
            bench.say(f"floor (bare_limit.py): {floor.per_second:.1f} msg/s")
        purpose = f"backlog-{backend}-{n}"
        url = bench.url(backend, purpose)
        empty = backlog.ingest(backlog.prepare(bench.work / purpose, url, bench.corpus), url, bench.corpus)
        bench.say(f"gateway ingest ({_name(backend)}): {empty.per_second:.1f} msg/s")
        if floor is not None:
            pairs.append((floor, empty))
    if pairs:
        ordered = sorted(pairs, key=lambda p: p[1].per_second / p[0].per_second)
        floor, empty = ordered[len(ordered) // 2]
        target = ratio_at_least(1.0, "floor") if backend == "sqlite" else ratio_at_least(0.6, "floor")
        note = _outcomes(empty) + (
            f"; median of {len(pairs)} pairs (the floor, then the gateway), ratios "
            + ", ".join(f"{g.per_second / f.per_second:.2f}×" for f, g in pairs) if len(pairs) > 1 else "")
        bench.add(Figure(f"backlog.{backend}", f"backlog, {_name(backend)}", empty.per_second, "msg/s",
                         floor.per_second, "floor", target, note,
                         details={"gateway": empty.details(), "floor": floor.details(),
                                  "pairs": [{"floor": f.details(), "gateway": g.details()} for f, g in pairs]}))
        empty = sorted((g for _, g in pairs), key=lambda g: g.per_second)[len(pairs) // 2]
    if history_db is not None:
        bench.part(f"history.{backend}", functools.partial(_history_backlog, bench, backend, history_db, empty))


def _outcomes(rate: backlog.Rate) -> str:
    return "outcomes: " + ", ".join(f"{k} {v}" for k, v in rate.outcomes.items())


def run_door(bench: Bench) -> None:
    assert bench.corpus is not None
    mails = door.corpus_mails(bench.corpus)
    clients = bench.sizes.door_clients
    base = door.floor(bench.args.shared, bench.work / "door-floor", mails, clients)
    bench.say(f"door floor: {base.per_second:.0f} msg/s")
    run = door.gateway(bench.work / "door", bench.corpus, mails, clients, bench.sizes.wait)
    note = f"{clients} clients, {len(mails)} corpus mails; pipeline " + (
        f"idle {run.drain_seconds:.1f} s after the load" if run.drain_seconds is not None
        else f"still busy {bench.sizes.wait:g} s after the load")
    details = {"gateway": run.details(), "floor": base.details()}
    bench.add(Figure("door.rate", "door, accepted", run.per_second, "msg/s", base.per_second, "door floor",
                     both(ratio_at_least(0.5, "floor"), at_least(300, "msg/s")), note, details))
    bench.add(Figure("door.p50", "door, end of DATA → 250, p50", run.latency_ms(50), "ms",
                     base.latency_ms(50), "door floor"))
    bench.add(Figure("door.p99", "door, end of DATA → 250, p99", run.latency_ms(99), "ms",
                     base.latency_ms(99), "door floor", below(50, "ms")))


def run_latency(bench: Bench) -> None:
    assert bench.corpus is not None
    s = bench.sizes
    mails = latency.new_case_mails(bench.corpus, int(s.latency_rate * s.latency_seconds))
    run = latency.measure(bench.work / "latency", bench.corpus, mails, s.latency_rate, s.wait)
    note = (f"{len(mails)} new cases offered at {s.latency_rate:g}/s, sent at {run.achieved_rate:.0f}/s"
            + (f"; {run.unanswered} never answered within {s.wait:g} s" if run.unanswered else ""))
    bench.add(Figure("latency.p50", "answer latency, 250 → relay, p50", run.ms(50), "ms",
                     target=below(200, "ms"), note=note, details=run.details()))
    bench.add(Figure("latency.p99", "answer latency, 250 → relay, p99", run.ms(99), "ms",
                     target=below(1000, "ms")))


def run_memory(bench: Bench) -> None:
    assert bench.corpus is not None
    run = memory.measure(bench.work / "memory", bench.corpus, bench.sizes.settle, bench.sizes.wait)
    rest_note = f"summed peak RSS (VmHWM) of its processes: {run.rest_peak / MB:.0f} MB"
    bench.add(Figure("memory.rest", "serve, memory at rest (Pss)", run.rest_pss / MB, "MB",
                     target=below(100, "MB"), note=rest_note,
                     details={"rss_before_message": run.rest, "vmhwm_at_rest": run.rest_peak,
                              "members": run.members}))
    note = (f"answered in {run.seconds:.1f} s" if run.answered
            else f"no answer at the relay within {bench.sizes.wait:g} s")
    note += f"; summed peak RSS (VmHWM) +{run.cost / MB:.0f} MB"
    bench.add(Figure("memory.message", "serve, memory added by the big message (Pss)", run.cost_pss / MB, "MB",
                     run.message_size / MB, "message size", ratio_at_most(4, "message size"), note,
                     {"peak": run.peak, "rest": run.rest, "message_size": run.message_size,
                      "pss_peak": run.peak_pss, "pss_rest": run.rest_pss, "vmhwm_cost": run.cost}))


def build_history(bench: Bench) -> dict[str, scale.Scale]:
    """A database with a million cases per backend, written in parallel."""
    assert bench.corpus is not None
    size = bench.history_size
    backends = [b for b in bench.backends() if b in bench.args.history]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    bench.say(f"writing {size.cases:,} cases of history into {', '.join(map(_name, backends))}")
    built = {}
    for backend, result in _build_all(bench, backends, size, now).items():
        if isinstance(result, BaseException):
            bench.errors[f"history.{backend}"] = f"{type(result).__name__}: {result}"
            bench.say(f"history on {_name(backend)} failed: {result}")
        else:
            bench.say(f"{_name(backend)}: history written in {result.filled.seconds:.0f} s")
            built[backend] = result
    return built


def settle(bench: Bench) -> None:
    """Let the gigabytes just written reach the disk before anything is timed again."""
    t0 = time.monotonic()
    if bench.postgres is not None:
        bench.part("checkpoint", bench.postgres.checkpoint)
    os.sync()
    bench.say(f"written to disk in {time.monotonic() - t0:.0f} s")


def run_jobs(bench: Bench, built: dict[str, scale.Scale]) -> None:
    """The reminders pass and `[SUIVI]` on each backend's history."""
    for backend, history_db in built.items():
        for part, measure in (("reminders", _reminders), ("suivi", _suivi)):
            if part in bench.parts:
                bench.part(f"{part}.{backend}", functools.partial(measure, bench, backend, history_db))


def _build_all(bench: Bench, backends: list[str], size: history.History,
               now: dt.datetime) -> dict[str, scale.Scale | BaseException]:
    """One thread per backend: SQLite works in this process, PostgreSQL in its server."""
    assert bench.corpus is not None
    built: dict[str, scale.Scale | BaseException] = {}

    def one(backend: str) -> None:
        try:
            url = bench.url(backend, f"history-{backend}")
            built[backend] = scale.build(bench.work / f"history-{backend}", url, bench.corpus, size, now)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            built[backend] = exc

    threads = [threading.Thread(target=one, args=(b,), daemon=True) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {b: built[b] for b in backends}


def _history_backlog(bench: Bench, backend: str, s: scale.Scale, empty: backlog.Rate) -> None:
    assert bench.corpus is not None
    rate = backlog.ingest(s.config, s.url, bench.corpus)
    cpu = (rate.cpu / rate.messages) / (empty.cpu / empty.messages)
    note = f"gateway CPU per message {cpu:.2f}× the empty run's" + (
        " (PostgreSQL's own work not counted)" if backend == "postgresql" else "")
    bench.add(Figure(f"history.{backend}", f"backlog into {_cases(s.filled.rows.get('cases', 0))} cases, {_name(backend)}",
                     rate.per_second, "msg/s", empty.per_second, "empty database", ratio_at_least(0.9, "empty database"),
                     note, details={"gateway": rate.details(), "empty": empty.details(), "history": _filled(s)}))


def _reminders(bench: Bench, backend: str, s: scale.Scale) -> None:
    size = bench.history_size
    run = scale.reminders(s, size.due, bench.sizes.reminders_cap)
    note = (f"cut at {bench.sizes.reminders_cap:g} s after {run.done:,} of {run.due:,}: estimated"
            if run.cut else f"{run.done:,} of {run.due:,} reminders sent")
    bench.add(Figure(f"reminders.{backend}", f"reminders pass, {_cases(size.cases)} cases, {_name(backend)}",
                     run.seconds, "s", target=below(30, "s"), note=note, details=run.details()))


def _suivi(bench: Bench, backend: str, s: scale.Scale) -> None:
    size = bench.history_size
    run = scale.suivi(s, bench.sizes.suivi_repeat)
    bench.add(Figure(f"suivi.{backend}", f"[SUIVI], client with {size.big_client_cases:,} cases, {_name(backend)}",
                     run.median_ms, "ms", target=below(200, "ms"),
                     note=f"pipeline only; median of {len(run.seconds)} runs, the first (cold) "
                          f"{run.seconds[0] * 1000:.0f} ms", details=run.details()))


def _filled(s: scale.Scale) -> dict[str, object]:
    return {"rows": s.filled.rows, "seconds": round(s.filled.seconds, 1), "guessed_columns": s.filled.guessed}


def _cases(n: int) -> str:
    return f"{n // 1_000_000}M" if n and n % 1_000_000 == 0 else f"{n:,}"


def _name(backend: str) -> str:
    return {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", type=_parts, default=set(PARTS), metavar="PART,…",
                    help=f"run these parts only: {', '.join(PARTS)}")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes (300 mails, 20,000 cases, 3 s of steady load): a smoke run")
    ap.add_argument("--postgres", default=DEFAULT_POSTGRES, metavar="URL|none",
                    help="PostgreSQL server to create bench_* databases on (default: %(default)s)")
    ap.add_argument("--history", type=_backends, default={"sqlite", "postgresql"}, metavar="BACKENDS",
                    help="backends for history, reminders and suivi (default: sqlite,postgresql)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON (- for standard output)")
    ap.add_argument("--shared", type=Path, default=procs.ROOT.parent / "shared",
                    help="folder holding bench/make_corpus.py, bare_limit.py, door_floor.py (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work", help="work folder (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder and the PostgreSQL databases")
    return ap.parse_args(argv)


def _parts(value: str) -> set[str]:
    parts = {p.strip() for p in value.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    return parts


def _backends(value: str) -> set[str]:
    backends = {b.strip() for b in value.split(",") if b.strip()}
    if not backends <= {"sqlite", "postgresql"}:
        raise argparse.ArgumentTypeError("backends are sqlite and postgresql")
    return backends


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.shared = args.shared.resolve()  # the parts run their scripts from other folders
    bench = Bench(args)
    env = report.environment(procs.ROOT)
    bench.say(f"work folder {bench.work}; load average {env['load_average']} on {env['cpus']} CPUs")
    procs.compile_gateway()
    try:
        connect_postgres(bench)
        bench.say("generating the corpus")
        bench.corpus = backlog.make_corpus(args.shared, bench.work, bench.sizes.corpus, args.seed)
        # The door and the latencies first, while the disk is quiet: they wait on fsync.
        for name, step in (("door", run_door), ("latency", run_latency), ("memory", run_memory)):
            if name in bench.parts:
                bench.say(f"-- {name}")
                bench.part(name, functools.partial(step, bench))
        built: dict[str, scale.Scale] = {}
        if bench.parts & {"history", "reminders", "suivi"}:
            bench.say("-- history")
            bench.part("history", lambda: built.update(build_history(bench)))
            settle(bench)
        if bench.parts & {"backlog", "history"}:
            bench.say("-- backlog")
            run_backlog(bench, built if "history" in bench.parts else {})
        if bench.parts & {"reminders", "suivi"}:
            bench.say("-- reminders, suivi")
            run_jobs(bench, built)
    finally:
        if bench.postgres is not None and not args.keep:
            bench.postgres.drop_all()
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    env["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    env["load_average_max"] = round(bench.busiest, 2)
    env["seconds"] = round(time.monotonic() - bench.t0)
    return finish(bench, env)


def finish(bench: Bench, env: dict[str, object]) -> int:
    """Print the table (and the JSON), say what could distort it, return the exit status."""
    out = sys.stderr if bench.args.json == "-" else sys.stdout
    print("", file=out)
    figures = sorted(bench.figures, key=lambda f: ORDER.index(f.key) if f.key in ORDER else len(ORDER))
    print(report.table(figures), file=out)
    for note in bench.notes:
        print(f"note: {note}", file=out)
    before, cpus = env["load_average"][0], env["cpus"] or 1  # type: ignore[index]
    # This run alone keeps about two processes busy: more than that is someone else's work.
    if before > 1 or bench.busiest > cpus + 2:  # type: ignore[operator]
        print(f"note: the machine was busy (load average {before:.1f} before the run, up to "
              f"{bench.busiest:.1f} during it, on {cpus} CPUs; the run itself accounts for about 2): "
              "rates are lower and latencies higher than on a quiet machine", file=out)
    for name, error in bench.errors.items():
        print(f"error: {name}: {error}", file=out)
    print(f"({env['seconds']} s, commit {env['commit']})", file=out)
    if bench.args.json:
        report.write_json(bench.args.json, figures, env, bench.errors)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
