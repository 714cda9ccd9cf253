#!/usr/bin/env python3
"""Crash battery: `gateway serve` killed with SIGKILL under load, again and again; then
nothing acknowledged is lost, nothing is done twice, every delivery goes out.

    .venv/bin/python bench/crash.py [--postgres URL] [--runs 50] [--seconds 4] [--clients 4] [--seed 1]

Each run starts `gateway serve` as a child process on one fresh database (a new SQLite
file, or with --postgres a new database created on that server and dropped at the end)
holding the demo data (config/sample-data.toml). Several clients write to its SMTP door
the whole time (crash_load.py: customers opening cases and replying through their Reply-To
tokens, agents answering through theirs). The process is killed with SIGKILL at a random
moment of the run, half the time right after a 250 (while the pipeline commits that
message's work), then started again. After the last run it runs undisturbed until the
inbound queue and the outbox are empty, and crash_check.py compares the database and the
relay stand-in with what the clients were told. Prints a table; exits 1 when something
that must be zero is not. The scheduled jobs are off: this is about mail. Talks to
127.0.0.1 only; bounded in runs and time.
"""
from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import crash_check
import crash_load
from sqlalchemy import Engine, create_engine, func, make_url, select, text

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "config" / "sample-data.toml"
GATEWAY = "import sys; from gateway.cli import main; sys.exit(main())"
# A long battery on a slow disk leaves a backlog: settling waits for it, up to this long.
SETTLE_SECONDS = 900
STOP_SECONDS = 90
# Deliveries claimed by a killed gateway are sent again once this claim expires: short, so
# that the battery sees those second copies (at least once) instead of waiting 5 minutes.
CLAIM_SECONDS = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def door_port() -> int:
    """A free port below the range the system hands out for port 0 (32768 and up on Linux).
    The door closes and opens again at each run: in between, a program asking the system
    for any free port must not be given it and answer our clients in its place."""
    pick = random.SystemRandom()
    for _ in range(200):
        port = pick.randint(20000, 32000)
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port for the door")


def write_config(work: Path, database_url: str, door: int, relay: int, claim_seconds: int) -> Path:
    config = work / "gateway.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n\n'
                      f'[smtp]\nhost = "127.0.0.1"\nport = {door}\n\n'
                      f'[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {relay}\npoll_seconds = 0.2\n'
                      f'claim_seconds = {claim_seconds}\n\n'
                      # The load comes from a handful of senders: no caps, so every notice is due now.
                      f'[support]\naddress = "{crash_load.SUPPORT}"\nanswers_per_hour = 1000000\n'
                      'notices_per_window = 1000000\nstranger_answers_per_hour = 1000000\n\n'
                      '[jobs]\nenabled = false\n', encoding="utf-8")
    return config


def gateway(config: Path, log: Path, *args: str, wait: bool = False) -> subprocess.Popen[bytes]:
    """`gateway --config CONFIG ARGS` as a child process writing to `log`."""
    with log.open("ab") as out:
        # Unbuffered: the line that says the door is open must reach the log at once.
        child = subprocess.Popen([sys.executable, "-c", GATEWAY, "--config", str(config), *args],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                 env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if wait and child.wait(timeout=120) != 0:
        raise RuntimeError(f"gateway {' '.join(args)} failed: see {log}")
    return child


def serve(config: Path, log: Path, port: int, timeout: float = 60) -> subprocess.Popen[bytes]:
    """`gateway serve`, once it says it listens on `port`: then the door is its own (a port
    another program held would have made it fail), not merely some server's."""
    start = log.stat().st_size if log.exists() else 0
    child = gateway(config, log, "serve")
    said = f"gateway listening on 127.0.0.1:{port} ".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if said in log.read_bytes()[start:]:
            return child
        if child.poll() is not None:
            raise RuntimeError(f"gateway serve exited with {child.returncode}: see {log}")
        time.sleep(0.05)
    child.kill()
    child.wait()
    raise RuntimeError(f"gateway serve did not open its door: see {log}")


def one_run(config: Path, log: Path, door: int, seconds: float, acked: threading.Event,
            rng: random.Random) -> bool:
    """Start serve, let the load run, kill it with SIGKILL; True when killed right after a 250."""
    child = serve(config, log, door)
    try:
        time.sleep(rng.uniform(0.1, seconds))
        after_ack = rng.random() < 0.5
        if after_ack:
            acked.clear()
            acked.wait(timeout=seconds)
            time.sleep(rng.uniform(0, 0.01))
    finally:
        child.kill()
        child.wait()
    return after_ack


def settle(engine: Engine, relay: crash_load.RelayStandIn, timeout: float = SETTLE_SECONDS) -> str | None:
    """Wait until nothing is pending inbound, no delivery is due (those a killed gateway had
    claimed, once its claim expired), and the relay is quiet; what is left when it is not."""
    from gateway.db import utcnow
    from gateway.models import DELIVERY_PENDING, Delivery, Disposition, InboundMessage
    deadline, quiet, last = time.monotonic() + timeout, 0, -1
    while quiet < 5:
        now = utcnow()
        with engine.connect() as connection:
            pending = connection.scalar(select(func.count()).select_from(InboundMessage)
                                        .where(InboundMessage.outcome == Disposition.PENDING))
            due = connection.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.status == DELIVERY_PENDING, Delivery.next_attempt_at <= now))
        if time.monotonic() > deadline:
            return f"not settled after {timeout:.0f} s: {pending} message(s) pending, {due} delivery(ies) due"
        total = relay.total()
        quiet = quiet + 1 if (pending == 0 and due == 0 and total == last) else 0
        last = total
        time.sleep(0.2)
    return None


def stop(child: subprocess.Popen[bytes], timeout: float = STOP_SECONDS) -> str | None:
    """Stop the gateway as an operator does (SIGTERM); kill it if it does not stop in time."""
    child.terminate()
    try:
        child.wait(timeout)
        return None
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return f"gateway serve did not stop within {timeout:.0f} s of SIGTERM"


def battery(database_url: str, work: Path, runs: int, seconds: float, clients: int = 4,
            seed: int = 1, claim_seconds: int = CLAIM_SECONDS,
            say: Callable[[str], None] = lambda _line: None) -> dict[str, object]:
    """Run the battery on the empty database `database_url`; returns the figures (a row of
    crash_check.table) with "problems": the figures that must be zero and are not. `say`
    gets a line of progress per run."""
    from gateway.db import utcnow
    rng, log = random.Random(seed), work / "gateway.log"
    relay = crash_load.RelayStandIn(free_port())
    relay.controller.start()
    door = door_port()
    config = write_config(work, database_url, door, relay.controller.port, claim_seconds)
    gateway(config, log, "import", str(SAMPLE_DATA), wait=True)
    load = Load(door, relay, clients, seed)
    engine = create_engine(database_url)
    try:
        kills_after_ack = 0
        for n in range(1, runs + 1):
            kills_after_ack += one_run(config, log, door, seconds, load.acked, rng)
            say(f"run {n}/{runs}: killed; {len(load.tally.acknowledged)} message(s) acknowledged so far")
        say("last run, then settling")
        settled_in, trouble = last_run(config, log, door, seconds, load, engine, relay)
        verdict = crash_check.check(engine, load.tally.acknowledged, relay.copies, utcnow())
    finally:
        load.stop()
        engine.dispose()
        relay.controller.stop()
    verdict.unacknowledged = load.tally.unacknowledged
    return {"database": make_url(database_url).get_backend_name(), "runs": runs,
            "kills_after_ack": kills_after_ack, "settle_seconds": settled_in, **asdict(verdict),
            "problems": verdict.problems() + trouble}


class Load:
    """The clients (crash_load.client), each in a thread, writing until `stop()`."""

    def __init__(self, door: int, relay: crash_load.RelayStandIn, clients: int, seed: int) -> None:
        self.tally, self.done, self.acked = crash_load.Tally(), threading.Event(), threading.Event()
        self.threads = [threading.Thread(target=crash_load.client, args=(
            door, relay, self.tally, self.done, seed * 100 + i, self.acked.set)) for i in range(clients)]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(30)


def last_run(config: Path, log: Path, door: int, seconds: float, load: Load, engine: Engine,
             relay: crash_load.RelayStandIn) -> tuple[int, list[str]]:
    """Start the gateway for good: the load goes on a while, stops, the gateway settles and
    is stopped with SIGTERM. Returns (seconds it took to settle, what went wrong)."""
    final = serve(config, log, door)
    try:
        time.sleep(seconds)
        load.stop()
        started = time.monotonic()
        unsettled = settle(engine, relay)
        settled_in = round(time.monotonic() - started)
    finally:
        unstopped = stop(final)
    return settled_in, [p for p in (unsettled, unstopped) if p]


def fresh_postgres(url: str) -> tuple[str, Engine]:
    """A new database on the server of `url`: (its URL, an admin engine to drop it with)."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"gw_crash_{secrets.token_hex(6)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(url).set(database=name).render_as_string(hide_password=False), admin


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--postgres", help="run on a new database created on this PostgreSQL server (and dropped)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=4.0, help="at most this long between start and kill")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.postgres:
            url, admin = fresh_postgres(args.postgres)
        else:
            url, admin = f"sqlite:///{work / 'gateway.sqlite3'}", None
        try:
            row = battery(url, work, args.runs, args.seconds, args.clients, args.seed,
                          say=lambda line: print(line, file=sys.stderr, flush=True))
        finally:
            if admin is not None:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
                admin.dispose()
    print(crash_check.table([row]))
    print(f"outcomes: {row['outcomes']}; extra copies at the relay: {row['extra_copies']}; "
          f"settled in {row['settle_seconds']} s after the last run")
    for problem in row["problems"]:  # type: ignore[attr-defined]
        print(f"PROBLEM {problem}")
    for reason in row["held_reasons"]:  # type: ignore[attr-defined]
        print(f"held: {reason}")
    return 1 if row["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
