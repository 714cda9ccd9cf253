"""`gateway serve` runs the pipeline and the jobs in a worker process, the outbox sender in
another: the door answers at once whatever they do, a worker that dies is started again
and processes what waited, and no worker outlives the serving process."""
from __future__ import annotations

import dataclasses
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import CLAIRE, MATHILDE, mail, send
from sqlalchemy import func, select

from gateway.db import session_scope
from gateway.models import InboundMessage
from gateway.worker_process import WorkerProcess

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Le lettrage s'arrête"


def answered(relay, message, rcpt=CLAIRE, timeout=30):
    """The relay's mail to `rcpt` answering `message` (In-Reply-To), once it arrives."""
    def found(got):
        return any(r.rcpt == rcpt and (r.message["In-Reply-To"] or "").strip() == message["Message-ID"] for r in got)
    relay.wait_for(found, timeout)


def pending(engine) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(InboundMessage)
                              .where(InboundMessage.outcome == "pending"))


def test_a_message_the_door_accepts_is_answered_by_the_worker_process(gateway, relay, engine) -> None:
    assert isinstance(gateway.worker, WorkerProcess)
    assert gateway.worker.pid not in (None, os.getpid())
    opening = mail(CLAIRE, OPEN)
    send(gateway.settings, opening)
    answered(relay, opening)
    relay.wait_for(lambda got: any(r.rcpt == MATHILDE for r in got))


@pytest.fixture
def quiet_gateway(settings, loaded, relay, free_port):
    """The gateway without its scheduled jobs: an idle worker then holds no lock."""
    from harness import running, wired
    quiet = dataclasses.replace(settings, jobs=dataclasses.replace(settings.jobs, enabled=False))
    with running(wired(quiet, free_port(), relay.controller.port), loaded) as gw:
        yield gw


def test_the_door_answers_at_once_while_the_worker_is_stopped(quiet_gateway, relay, engine) -> None:
    gateway = quiet_gateway
    time.sleep(0.5)     # the worker has started and found nothing to do
    pid = gateway.worker.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        messages = [mail(CLAIRE, f"{OPEN} {i}") for i in range(5)]
        for message in messages:
            t0 = time.monotonic()
            send(gateway.settings, message)        # raises unless the door said 250
            assert time.monotonic() - t0 < 2
        assert pending(engine) == 5
    finally:
        os.kill(pid, signal.SIGCONT)
    for message in messages:
        answered(relay, message)


def test_a_killed_worker_is_started_again_and_processes_what_waited(gateway, relay, engine) -> None:
    first, sender = gateway.worker.pid, gateway.worker.sender.process.pid
    os.kill(first, signal.SIGKILL)
    os.kill(sender, signal.SIGKILL)
    opening = mail(CLAIRE, OPEN)
    send(gateway.settings, opening)
    answered(relay, opening)
    assert gateway.worker.pid not in (None, first)
    assert gateway.worker.sender.process.pid != sender


def children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in found]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_the_workers_end_with_a_killed_serve(settings, loaded, free_port, tmp_path) -> None:
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n[smtp]\nport = {port}\n'
                      f'[support]\naddress = "{settings.support.address}"\n[jobs]\nenabled = false\n'
                      '[outbound]\ntransport = "maildir"\nmaildir = "sent"\n', encoding="utf-8")
    gateway = str(Path(sys.executable).parent / "gateway")
    serve = subprocess.Popen([gateway, "--config", str(config), "serve"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        deadline = time.monotonic() + 20
        while len(workers := [p for p in children(serve.pid) if
                              Path(f"/proc/{p}/comm").read_text().startswith("gateway-")]) < 2:
            assert time.monotonic() < deadline, "no worker processes (the pipeline's, the sender's)"
            time.sleep(0.1)
        serve.kill()
        serve.wait()
        deadline = time.monotonic() + 10
        while not all(gone(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived serve"
            time.sleep(0.1)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


def test_the_pipeline_may_run_in_the_serving_process(settings, loaded, relay, free_port) -> None:
    from harness import running, wired
    threaded = dataclasses.replace(settings, serve=dataclasses.replace(settings.serve, worker_process=False))
    with running(wired(threaded, free_port(), relay.controller.port), loaded) as gw:
        assert not isinstance(gw.worker, WorkerProcess)
        opening = mail(CLAIRE, OPEN)
        send(gw.settings, opening)
        answered(relay, opening)
