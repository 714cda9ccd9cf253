"""Time the pipeline on one stored message, inside a gateway process of its own.

    python -m bench.probe CONFIG MESSAGE.eml [--repeat N]

Stores the message through the gateway's intake (as a door does), then times
`pipeline.run.process` on it alone: the pipeline's processing of that one message, without
the door, the start-up or the outbox's sending. Each repeat stores the message again
under a Message-ID of its own. Prints one JSON object: seconds per run and outcomes.
The benchmark's only use of the gateway's insides: a per-message timing seen from the
outside (a log line, a column) would let it go.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time

from gateway import config, intake, schema
from gateway.db import make_engine
from gateway.pipeline import run

_MESSAGE_ID = re.compile(rb"^Message-ID:[^\n]*$", re.IGNORECASE | re.MULTILINE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("message")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    settings = config.load(args.config)
    engine = make_engine(settings)
    schema.upgrade(engine)
    raw = open(args.message, "rb").read()
    seconds, outcomes = [], []
    for i in range(args.repeat):
        fresh = _MESSAGE_ID.sub(f"Message-ID: <probe-{time.time_ns()}-{i}@bench.example>".encode(), raw, count=1)
        stored = intake.store(engine, fresh, door="smtp", envelope_to=[settings.support.address])
        t0 = time.perf_counter()
        outcome = run.process(engine, settings, stored.id)
        seconds.append(time.perf_counter() - t0)
        outcomes.append(None if outcome is None else {"outcome": outcome.outcome, "reasons": list(outcome.reasons)})
    engine.dispose()
    print(json.dumps({"seconds": seconds, "outcomes": outcomes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
