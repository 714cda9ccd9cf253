"""`gateway serve` as a service sees it: one log line per event (JSON with --log-format
json), a startup line that claims only the doors that are open, and /healthz and /metrics
on a loopback port, read over real sockets while real mail goes through."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import CLAIRE, mail
from test_cli import OPEN, write_config

from gateway.config import HealthSettings
from gateway.jobs import NAMES
from gateway.serve import Gateway

ROOT = Path(__file__).resolve().parent.parent


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def wait(condition: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def sample(metrics: str, name: str) -> float | None:
    """The value of the sample `name` (with its labels, as written) in a /metrics text."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


class Served:
    """A `gateway serve` child: its process, then once stopped all it wrote."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.child, self.output = child, ""


@contextmanager
def serving(config: Path, *args: str) -> Iterator[Served]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GATEWAY_CONFIG", None)
    child = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "serve", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    served = Served(child)
    try:
        yield served
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        served.output += child.communicate(timeout=60)[0]


def test_serve_answers_healthz_and_metrics_and_logs_json_lines(tmp_path, settings, loaded, free_port) -> None:
    door, health = free_port(), free_port()
    config = write_config(tmp_path / "gateway.toml", settings.database_url, smtp={"port": door},
                          outbound={"transport": "maildir", "maildir": "sent"},
                          health={"enabled": True, "port": health})
    base = f"http://127.0.0.1:{health}"
    with serving(config, "--log-format", "json") as served:
        code, body = wait(lambda: _try(get, base + "/healthz"))
        report = json.loads(body)
        assert code == 200 and report["status"] == "ok" and report["database"] == "up"
        assert report["parts"] == {"smtp": "up", "imap": "disabled", "pipeline": "up", "outbox": "up",
                                   "scheduler": "up"}
        assert set(report["jobs"]) == set(NAMES)
        with smtplib.SMTP("127.0.0.1", door) as smtp:
            smtp.send_message(mail(CLAIRE, OPEN))
        sent = 'gateway_deliveries_total{result="sent"}'
        reminders = 'gateway_job_runs_total{job="reminders",outcome="ok"}'
        # The jobs run in the worker process beside the pipeline, in their own time: wait for both.
        metrics = wait(lambda: m if (sample(m := get(base + "/metrics")[1], sent) or 0) >= 3
                       and (sample(m, reminders) or 0) >= 1 else None)
        assert sample(metrics, 'gateway_messages_received_total{door="smtp",outcome="created"}') == 1
        assert sample(metrics, 'gateway_processing_seconds_count{outcome="created"}') == 1
        assert sample(metrics, 'gateway_outbox_deliveries{status="failed"}') == 0
        assert sample(metrics, "gateway_held_messages") == 0 and sample(metrics, "gateway_database_up") == 1
        assert get(base + "/nothing")[0] == 404
        queues = json.loads(get(base + "/healthz")[1])
        assert queues["pipeline"] == {"pending": 0, "held": 0} and queues["outbox"]["failed"] == 0
    assert served.child.returncode == 0
    events = [json.loads(line) for line in served.output.splitlines()]
    assert events and all({"time", "level", "logger", "message"} <= set(e) for e in events)
    assert any(e["message"].startswith(f"gateway listening on 127.0.0.1:{door} (SMTP)") for e in events)


def _try(fetch: Callable[[str], tuple[int, str]], url: str) -> tuple[int, str] | None:
    try:
        return fetch(url)
    except OSError:
        return None


def test_serve_does_not_claim_a_door_it_did_not_open(tmp_path, settings, engine, free_port) -> None:
    config = write_config(tmp_path / "gateway.toml", settings.database_url, smtp={"enabled": False},
                          jobs={"enabled": False})
    with serving(config) as served:
        line = served.child.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("gateway running with no SMTP door ([smtp] enabled = false)"), line
    assert "listening" not in line and "scheduled jobs off" in line
    assert served.child.returncode == 0


def test_healthz_says_503_and_why_when_a_door_is_down(settings, loaded, free_port) -> None:
    settings = dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, port=free_port()),
                                   health=HealthSettings(enabled=True, port=free_port()),
                                   jobs=dataclasses.replace(settings.jobs, enabled=False))
    gateway = Gateway(settings, loaded)
    gateway.start()
    try:
        url = f"http://127.0.0.1:{settings.health.port}/healthz"
        assert get(url)[0] == 200
        assert gateway.door is not None
        gateway.door.stop()
        code, body = get(url)
        report = json.loads(body)
        assert code == 503 and report["status"] == "failing" and report["problems"] == ["smtp is down"]
        assert report["parts"]["smtp"] == "down" and report["parts"]["scheduler"] == "disabled"
    finally:
        gateway.door = None
        gateway.stop()


def test_healthz_answers_on_the_ipv6_loopback_the_configuration_allows(settings, loaded, free_port) -> None:
    settings = dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, port=free_port()),
                                   health=HealthSettings(enabled=True, host="::1", port=free_port()),
                                   jobs=dataclasses.replace(settings.jobs, enabled=False))
    gateway = Gateway(settings, loaded)
    gateway.start()
    try:
        code, body = get(f"http://[::1]:{settings.health.port}/healthz")
        assert code == 200 and json.loads(body)["status"] == "ok"
    finally:
        gateway.stop()
