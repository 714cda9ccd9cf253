#!/usr/bin/env python3
"""Backlog ingestion: `gateway ingest DIR` against the plain-Python floor, in the same run.

    .venv/bin/python bench/ingest.py [--count 2000] [--seed 42] [--shared ../shared] [--postgres URL]

Generates the corpus and its reference data with shared/bench/make_corpus.py, runs the
floor (shared/bench/bare_limit.py: parse and insert one row per message), then the whole
gateway on a fresh SQLite file (or PostgreSQL): store every raw message, parse, strip the
quotes, route, open or append to cases, render the answers and write the outbox. Prints
one JSON line per system and the ratio gateway/floor. Not a test: figures, not verdicts.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent


def make_corpus(shared: Path, work: Path, count: int, seed: int) -> tuple[Path, Path]:
    mailbox, refdata = work / "mailbox", work / "refdata.toml"
    subprocess.run([sys.executable, str(shared / "bench" / "make_corpus.py"), "--count", str(count),
                    "--seed", str(seed), "--out", str(mailbox), "--refdata", str(refdata), "--clean"],
                   check=True, stdout=subprocess.DEVNULL)
    return mailbox, refdata


def floor(shared: Path, mailbox: Path, work: Path) -> dict:
    out = subprocess.run([sys.executable, str(shared / "bench" / "bare_limit.py"), str(mailbox),
                          "--db", str(work / "floor.sqlite3")], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def gateway(mailbox: Path, refdata: Path, work: Path, database_url: str | None) -> dict:
    from gateway.cli import main
    from gateway.models import Case, Delivery, InboundMessage
    url = database_url or f"sqlite:///{work / 'gateway.sqlite3'}"
    config = work / "gateway.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[support]\naddress = "support@editeur.example"\n'
                      '[outbound]\nmaildir = "sent"\n', encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "import", str(refdata)])
    assert result.exit_code == 0, result.output
    t0 = time.perf_counter()
    result = runner.invoke(main, ["--config", str(config), "ingest", str(mailbox)])
    seconds = time.perf_counter() - t0
    assert result.exit_code == 0, result.output
    engine = create_engine(url)
    with Session(engine) as session:
        outcomes = dict(session.execute(select(InboundMessage.outcome, func.count())
                                        .group_by(InboundMessage.outcome)).all())
        cases = session.scalar(select(func.count()).select_from(Case))
        deliveries = session.scalar(select(func.count()).select_from(Delivery))
    engine.dispose()
    n = sum(outcomes.values())
    return {"system": "gateway", "database": url.split(":")[0], "messages": n,
            "seconds": round(seconds, 3), "msg_per_s": round(n / seconds, 1),
            "outcomes": outcomes, "cases": cases, "outbox_deliveries": deliveries}


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--postgres", help="also run the gateway on this (emptied!) PostgreSQL database URL")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mailbox, refdata = make_corpus(args.shared, work, args.count, args.seed)
        base = floor(args.shared, mailbox, work)
        print(json.dumps(base))
        runs = [gateway(mailbox, refdata, work, None)]
        if args.postgres:
            reset_postgres(args.postgres)
            runs.append(gateway(mailbox, refdata, work, args.postgres))
        for run in runs:
            run["ratio_to_floor"] = round(run["msg_per_s"] / base["msg_per_s"], 2)
            print(json.dumps(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
