"""The HTTP endpoint of `gateway serve` on a loopback port (`[health]`): GET /healthz says
whether the gateway can do its work (200) or not (503), with a JSON body saying why; GET
/metrics gives the Prometheus text format (gateway/metrics.py). Reads only.

Unhealthy (503): the database does not answer, an enabled door is not up, or a loop of
the process (pipeline, outbox sender, scheduler) has stopped. Queue depths, held
messages and failed jobs are reported, not judged: they need a human, not a restart.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.db import read_scope
from gateway.jobs import record
from gateway.models import DELIVERY_FAILED, DELIVERY_PENDING, Delivery, Disposition, InboundMessage

log = logging.getLogger(__name__)

# What the running gateway says about its parts: name -> "up", "down" or "disabled".
Parts = Callable[[], dict[str, str]]


def report(engine: Engine, parts: Parts) -> tuple[bool, dict[str, Any]]:
    """(healthy, the /healthz body): the database, the parts, queue depths, last job runs."""
    running = parts()
    try:
        queues, database = _queues(engine), "up"
    except SQLAlchemyError as exc:
        queues, database = {}, f"down: {' '.join(str(getattr(exc, 'orig', None) or exc).split())[:200]}"
    problems = [f"database {database}"] if database != "up" else []
    problems += [f"{name} is down" for name, state in running.items() if state == "down"]
    body = {"status": "failing" if problems else "ok", "problems": problems, "database": database,
            "parts": running, **queues}
    return not problems, body


def _queues(engine: Engine) -> dict[str, Any]:
    def count(model: Any, *where: Any) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0
    with read_scope(engine) as session:
        return {
            "pipeline": {"pending": count(InboundMessage, InboundMessage.outcome == Disposition.PENDING),
                         "held": count(InboundMessage, InboundMessage.outcome == Disposition.HELD)},
            "outbox": {"pending": count(Delivery, Delivery.status == DELIVERY_PENDING),
                       "failed": count(Delivery, Delivery.status == DELIVERY_FAILED)},
            "jobs": {name: {k: r.get(k) for k in ("last_run", "outcome", "next_run")}
                     for name, r in record.report(session).items()},
        }


class _Ipv6Server(ThreadingHTTPServer):
    """For `[health] host = "::1"`: the standard server speaks IPv4 only."""
    address_family = socket.AF_INET6


class Endpoint:
    """The HTTP server in a thread of its own: `start()` binds (and raises when it cannot),
    `stop()` closes it."""

    def __init__(self, host: str, port: int, engine: Engine, parts: Parts, registry: CollectorRegistry) -> None:
        handler = type("Handler", (_Handler,), {"engine": engine, "parts": staticmethod(parts),
                                                "registry": registry})
        self.server = (_Ipv6Server if ":" in host else ThreadingHTTPServer)((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    engine: Engine
    parts: Parts
    registry: CollectorRegistry

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            healthy, body = report(self.engine, self.parts)
            self._answer(200 if healthy else 503, "application/json",
                         json.dumps(body, ensure_ascii=False, indent=2).encode() + b"\n")
        elif path == "/metrics":
            self._answer(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        else:
            self._answer(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

    def _answer(self, code: int, content_type: str, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health: " + format, *args)
