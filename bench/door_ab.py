"""The SMTP door of several checkouts of the gateway under the same load, alternately.

    python -m bench.door_ab [--rounds N] LABEL=CHECKOUT[:VAR=VALUE,…] …

Each round runs every checkout once, in the order given, each as `bench/run`'s door part
runs the gateway (a new SQLite file, the corpus's reference data, `serve` with its
outbound mail to the relay stand-in, 50 clients sending the 2,000 corpus mails once),
but without the floor: a change's effect on the door's tail is smaller than what the
machine does to it from one minute to the next, so the checkouts are compared run after
run, not across two `bench/run`. `CHECKOUT` is a folder holding a `gateway` package (a
git worktree of another commit, say: `git worktree add --detach ../old HEAD~1`); its code
runs with this virtualenv's libraries. `VAR=VALUE` go into the environment of its `serve`.

Prints, per run, the accepted rate and the end of DATA → 250 p50 / p99 (as `bench/run`),
and the whole transaction's (MAIL FROM to the final answer); then each checkout's
median. Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench import backlog, door, procs, smtp_load


@dataclass
class Checkout:
    label: str
    folder: Path
    env: dict[str, str]
    runs: list[tuple[float, float, float, float, float]] = field(default_factory=list)


def checkout(spec: str) -> Checkout:
    label, _, rest = spec.partition("=")
    folder, _, variables = rest.partition(":")
    if not label or not (Path(folder) / "gateway").is_dir():
        raise argparse.ArgumentTypeError(f"{spec!r}: LABEL=CHECKOUT, CHECKOUT a folder holding gateway/")
    env = dict(v.split("=", 1) for v in variables.split(",") if v)
    return Checkout(label, Path(folder).resolve(), env)


def run_once(c: Checkout, corpus: backlog.Corpus, mails: list[smtp_load.Mail], work: Path,
             clients: int) -> smtp_load.Load:
    """`bench/run`'s door run with the checkout's code, stopped once the load ends (the
    pipeline's drain is not measured here)."""
    shutil.rmtree(work, ignore_errors=True)
    env = dict(procs.CHILD_ENV, **c.env, PYTHONPATH=os.pathsep.join([str(c.folder), str(procs.ROOT)]))
    return door.gateway(work, corpus, mails, clients, drain_timeout=0, env=env).load


def ms(values: list[float], p: float) -> float:
    found = smtp_load.percentile(values, p)
    return 0.0 if found is None else found * 1000


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.door_ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkouts", type=checkout, nargs="+", metavar="LABEL=CHECKOUT[:VAR=VALUE,…]")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--shared", type=Path, default=procs.ROOT.parent / "shared",
                    help="folder holding bench/make_corpus.py (default: %(default)s)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gateway-door-ab-"))
    try:
        corpus = backlog.make_corpus(args.shared.resolve(), work, 2000, 42)
        mails = door.corpus_mails(corpus)
        for c in args.checkouts:
            procs.compile_gateway(c.folder)
        for r in range(args.rounds):
            for c in args.checkouts:
                load = run_once(c, corpus, mails, work / c.label, args.clients)
                done = load.accepted
                latency = [s.latency for s in done]
                whole = [s.answered - s.started for s in done]
                c.runs.append((len(done) / load.seconds, ms(latency, 50), ms(latency, 99), ms(whole, 50),
                               ms(whole, 99)))
                rate, p50, p99, w50, w99 = c.runs[-1]
                print(f"round {r + 1} {c.label:>10}: {len(done)} accepted, {rate:,.0f} msg/s; end of DATA → 250 "
                      f"p50 {p50:.1f} p99 {p99:.1f} ms; MAIL FROM → 250 p50 {w50:.1f} p99 {w99:.1f} ms", flush=True)
        for c in args.checkouts:
            p99s = sorted(run[2] for run in c.runs)
            print(f"{c.label:>10}: end of DATA → 250 p99 median {statistics.median(p99s):.1f} ms "
                  f"({', '.join(f'{v:.1f}' for v in p99s)}); p50 median {statistics.median(r[1] for r in c.runs):.1f};"
                  f" MAIL FROM → 250 p99 median {statistics.median(r[4] for r in c.runs):.1f};"
                  f" {statistics.median(r[0] for r in c.runs):,.0f} msg/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
