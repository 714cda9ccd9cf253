"""The pipeline's decide step alone: statements and CPU per message, by outcome.

    PYTHONPATH=WORKTREE .venv/bin/python bench/decide_step.py MAILBOX REFDATA WORK \\
        [--postgres URL] [--cprofile]

Imports the reference data into a new database (a SQLite file in WORK, or a new
PostgreSQL database `decide_step` on the server of URL), stores the corpus, reads and
parses it (not measured), then decides it as `gateway ingest` does (batches of 50, one
transaction each) and prints one JSON object: CPU milliseconds and SQL statements per
message, and the statements run inside `pipeline.run.decide` per outcome. The benchmark's
only other use of the gateway's insides beside probe.py; PYTHONPATH picks the worktree
measured (run it by its path, not with -m, from another folder), so the old and the new
code run back to back with one virtualenv. MAILBOX and REFDATA: shared/bench/make_corpus.py.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, make_url, text


def _database(work: Path, postgres: str | None) -> str:
    if postgres is None:
        for suffix in ("", "-wal", "-shm", "-writers"):
            Path(f"{work}/decide.sqlite3{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{work}/decide.sqlite3"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS decide_step WITH (FORCE)"))
        connection.execute(text("CREATE DATABASE decide_step"))
    admin.dispose()
    return make_url(postgres).set(database="decide_step").render_as_string(hide_password=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mailbox", type=Path)
    ap.add_argument("refdata", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("--postgres")
    ap.add_argument("--cprofile", action="store_true", help="also write WORK/decide.prof")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    url = _database(args.work, args.postgres)
    config = args.work / "gateway.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[support]\naddress = "support@editeur.example"\n'
                      f'[outbound]\ntransport = "maildir"\nmaildir = "{args.work}/sent"\n[jobs]\nenabled = false\n'
                      f'[log]\nfile = "{args.work}/gateway.log"\n', encoding="utf-8")
    subprocess.run([sys.executable, "-c", "from gateway.cli import main; main()", "--config", str(config),
                    "import", str(args.refdata)], check=True, capture_output=True)
    print(json.dumps(_measure(config, args.mailbox, args.work if args.cprofile else None)))
    return 0


def _count_direct(count: Any) -> None:
    """Count the statements run on the driver's cursor (gateway/direct.py), which the
    engine's events do not see; a worktree from before it has none."""
    try:
        from gateway.direct import Direct
    except ImportError:
        return
    first, many = Direct.first, Direct.many

    def counted_first(self: Any, *a: Any) -> Any:
        count()
        return first(self, *a)

    def counted_many(self: Any, session: Any, rows: list[Any]) -> Any:
        if rows:
            count()
        return many(self, session, rows)

    Direct.first, Direct.many = counted_first, counted_many  # type: ignore[method-assign]


def _measure(config: Path, mailbox: Path, profile_to: Path | None) -> dict[str, Any]:
    from gateway import config as gateway_config
    from gateway import intake, schema
    from gateway.db import make_engine
    from gateway.pipeline import reading, run
    settings = gateway_config.load(str(config))
    engine = make_engine(settings)
    schema.upgrade(engine)
    raws = [f.read_bytes() for f in sorted(mailbox.glob("*.eml"))]
    ids = [s.id for i in range(0, len(raws), 50) for s in intake.store_many(engine, raws[i:i + 50], "pipe")]
    batches = [reading.read(engine, ids[i:i + 50]) for i in range(0, len(ids), 50)]
    counts: collections.Counter[str] = collections.Counter()
    where = ["other"]
    event.listen(engine, "before_cursor_execute", lambda *_: counts.update([where[0]]))
    _count_direct(lambda: counts.update([where[0]]))
    outcomes: collections.Counter[str] = collections.Counter()
    inside: collections.Counter[str] = collections.Counter()
    decide = run.decide

    def counted(*a: Any, **k: Any) -> Any:
        before, where[0] = counts["decide"], "decide"
        try:
            outcome = decide(*a, **k)
        finally:
            where[0] = "other"
        outcomes[outcome.outcome] += 1
        inside[outcome.outcome] += counts["decide"] - before
        return outcome

    run.decide = counted  # type: ignore[assignment]
    profile = cProfile.Profile() if profile_to else None
    cpu = time.process_time()
    if profile:
        profile.enable()
    for batch in batches:
        run._decide_all(engine, settings, batch, None, False, run.Pace())
    if profile:
        profile.disable()
        profile.dump_stats(str(profile_to / "decide.prof"))  # type: ignore[operator]
    cpu = time.process_time() - cpu
    n = sum(outcomes.values())
    return {"messages": n, "outcomes": dict(outcomes), "cpu_ms_per_message": round(1000 * cpu / n, 3),
            "statements_per_message": round(sum(counts.values()) / n, 2),
            "statements_in_rules_per_outcome": {k: round(inside[k] / outcomes[k], 2) for k in outcomes}}


if __name__ == "__main__":
    sys.exit(main())
