"""The figures `gateway serve` shows at /metrics, in the Prometheus text format.

What the database knows is read from it at each scrape, so that it counts the work of
every process (an MTA's `gateway ingest`, a second `serve`, `outbox send` by hand):
messages received by door and outcome, held and pending messages, deliveries by status,
each job's last run. What only this gateway's workers see is counted as it happens (the
worker processes report it to the serving process): the pipeline's processing time,
deliveries by result, job runs. Each Gateway has its own registry.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.db import read_scope
from gateway.jobs import NAMES, record
from gateway.models import Delivery, InboundMessage

log = logging.getLogger(__name__)
# Seconds from 10 ms to 2 minutes: a plain message takes tens of milliseconds, a hostile
# one up to a second or two (README, "Hostile input").
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Stored(Collector):
    """The database's counts, read at each scrape; `gateway_database_up` 0 when it fails."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("gateway_database_up", "1 when the database answered this scrape.")
        try:
            metrics = self._read()
        except SQLAlchemyError:
            log.warning("metrics: the database did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _read(self) -> list[Metric]:
        received = CounterMetricFamily("gateway_messages_received", "Messages stored, by door and outcome.",
                                       labels=["door", "outcome"])
        outbox = GaugeMetricFamily("gateway_outbox_deliveries", "Deliveries in the outbox, by status.",
                                   labels=["status"])
        held = GaugeMetricFamily("gateway_held_messages", "Messages held for a human (gateway inbound retry).")
        last_run = GaugeMetricFamily("gateway_job_last_run_timestamp_seconds",
                                     "When each scheduled job last ran (its clock), as a Unix time.", labels=["job"])
        with read_scope(self.engine) as session:
            by_outcome = session.execute(select(InboundMessage.door, InboundMessage.outcome, func.count())
                                         .group_by(InboundMessage.door, InboundMessage.outcome)).all()
            by_status = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
            jobs = record.report(session)
        held_count = 0
        for door, outcome, count in by_outcome:
            received.add_metric([door, outcome], count)
            held_count += count if outcome == "held" else 0
        held.add_metric([], held_count)
        for status in ("pending", "failed", "held_back", "sent", "merged"):
            outbox.add_metric([status], dict(by_status).get(status, 0))
        for name in NAMES:
            if (at := jobs[name].get("last_run")) is not None:
                last_run.add_metric([name], dt.datetime.fromisoformat(at).timestamp())
        return [received, held, outbox, last_run]


class Metrics:
    """A registry with the database's counts and this gateway's own figures."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(Stored(engine))
        self.processing = Histogram(
            "gateway_processing_seconds", "Time the pipeline took over one stored message, by outcome.",
            ["outcome"], buckets=BUCKETS, registry=self.registry)
        self.deliveries = Counter(
            "gateway_deliveries", "Deliveries this gateway handed to the relay or the Maildir, by result "
            "(sent; retry: due again later; failed: set aside; skipped: another sender held it).",
            ["result"], registry=self.registry)
        self.job_runs = Counter("gateway_job_runs", "Scheduled job runs by this gateway, by job and outcome.",
                                ["job", "outcome"], registry=self.registry)

    def apply(self, event: tuple[Any, ...]) -> None:
        """Count what a worker reported, in this process or another (gateway/worker.py):
        ("processed", outcome, seconds), ("drained", counts), ("job", name, outcome)."""
        kind, *args = event
        if kind == "processed":
            self.processing.labels(args[0]).observe(args[1])
        elif kind == "drained":
            self.drained(args[0])
        elif kind == "job":
            self.job_runs.labels(args[0], args[1]).inc()

    def drained(self, counts: dict[str, int]) -> None:
        """Count the results of one drain of the outbox (send.drain's counts)."""
        for status, n in counts.items():
            self.deliveries.labels("retry" if status == "pending" else status).inc(n)
