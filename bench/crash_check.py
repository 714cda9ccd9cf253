"""The crash battery's verdict: what the database and the relay stand-in say once the
gateway has settled, against what the clients were told (250 for each acknowledged
Message-ID). Reads only."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway.models import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SENT,
    Case,
    Delivery,
    Disposition,
    InboundMessage,
    OutboundMessage,
)

# The figures that must be zero, with what each means.
MUST_BE_ZERO = {
    "lost": "acknowledged (250) but not stored",
    "stored_twice": "acknowledged once, stored more than once",
    "unprocessed": "still pending after settling",
    "held": "held for a human (see the reasons)",
    "cases_duplicated": "an opening message that made more than one case",
    "openings_without_case": "an acknowledged opening that made no case",
    "deliveries_failed": "deliveries set aside as failed",
    "deliveries_stuck": "pending deliveries due, unlocked, and still not sent after settling",
    "missing_at_relay": "deliveries marked sent that the relay never got",
}


@dataclass
class Verdict:
    """The battery's figures; `problems()` lists the non-zero ones that must be zero."""
    acknowledged: int = 0
    unacknowledged: int = 0
    lost: int = 0
    stored_twice: int = 0
    unprocessed: int = 0
    held: int = 0
    held_reasons: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    cases: int = 0
    cases_duplicated: int = 0
    openings_without_case: int = 0
    deliveries: int = 0
    deliveries_sent: int = 0
    deliveries_waiting: int = 0     # pending, locked by the claim of a killed sender: due within minutes
    deliveries_failed: int = 0
    deliveries_stuck: int = 0
    missing_at_relay: int = 0
    sent_twice: int = 0             # deliveries the relay got more than once (at least once)
    extra_copies: int = 0

    def problems(self) -> list[str]:
        return [f"{name}: {getattr(self, name)} ({meaning})" for name, meaning in MUST_BE_ZERO.items()
                if getattr(self, name)]


def check(engine: Engine, acknowledged: dict[str, str], copies: Counter[tuple[str, str]],
          now: dt.datetime) -> Verdict:
    """Compare the database and the relay's `copies` with the `acknowledged` Message-IDs
    (Message-ID -> kind) at `now` (naive UTC)."""
    verdict = Verdict(acknowledged=len(acknowledged))
    with Session(engine) as session:
        _inbound(session, verdict, acknowledged)
        _cases(session, verdict, acknowledged)
        _deliveries(session, verdict, copies, now)
    return verdict


def _inbound(session: Session, verdict: Verdict, acknowledged: dict[str, str]) -> None:
    rows = [r for r in session.execute(select(InboundMessage.message_id, InboundMessage.outcome,
                                              InboundMessage.reasons)) if r.message_id in acknowledged]
    stored = Counter(r.message_id for r in rows)
    verdict.lost = sum(1 for m in acknowledged if stored[m] == 0)
    verdict.stored_twice = sum(1 for n in stored.values() if n > 1)
    verdict.outcomes = dict(Counter(r.outcome for r in rows))
    verdict.unprocessed = verdict.outcomes.get(Disposition.PENDING, 0)
    verdict.held = verdict.outcomes.get(Disposition.HELD, 0)
    verdict.held_reasons = [str(r.reasons)[:200] for r in rows if r.outcome == Disposition.HELD][:5]


def _cases(session: Session, verdict: Verdict, acknowledged: dict[str, str]) -> None:
    per_opening = Counter(dict(session.execute(select(Case.thread_id, func.count()).group_by(Case.thread_id)).all()))
    verdict.cases = sum(per_opening.values())
    verdict.cases_duplicated = sum(n - 1 for n in per_opening.values() if n > 1)
    verdict.openings_without_case = sum(1 for m, kind in acknowledged.items() if kind == "open" and not per_opening[m])


def _deliveries(session: Session, verdict: Verdict, copies: Counter[tuple[str, str]], now: dt.datetime) -> None:
    rows = session.execute(select(Delivery.recipient, OutboundMessage.message_id, Delivery.status,
                                  Delivery.next_attempt_at, Delivery.locked_until)
                           .join(OutboundMessage, Delivery.message_id == OutboundMessage.id)).all()
    verdict.deliveries = len(rows)
    for r in rows:
        got = copies[(r.recipient.lower(), r.message_id)]
        verdict.sent_twice += got > 1
        verdict.extra_copies += max(0, got - 1)
        if r.status == DELIVERY_SENT:
            verdict.deliveries_sent += 1
            verdict.missing_at_relay += got == 0
        elif r.status == DELIVERY_FAILED:
            verdict.deliveries_failed += 1
        elif r.status == DELIVERY_PENDING and r.locked_until is not None and r.locked_until > now:
            verdict.deliveries_waiting += 1
        else:
            verdict.deliveries_stuck += 1


COLUMNS = [("database", "database"), ("runs", "runs"), ("kills after a 250", "kills_after_ack"),
           ("acknowledged", "acknowledged"), ("not acknowledged", "unacknowledged"), ("lost", "lost"),
           ("stored twice", "stored_twice"), ("unprocessed", "unprocessed"), ("held", "held"),
           ("cases", "cases"), ("duplicated cases", "cases_duplicated"), ("deliveries", "deliveries"),
           ("sent", "deliveries_sent"), ("waiting for a dead claim", "deliveries_waiting"),
           ("sent twice", "sent_twice")]


def table(rows: list[dict[str, object]]) -> str:
    """A plain-text table of `rows` (dicts with the keys of COLUMNS), one line per database."""
    widths = [max(len(title), *(len(str(row[key])) for row in rows)) for title, key in COLUMNS]
    lines = ["  ".join(title.rjust(w) for (title, _), w in zip(COLUMNS, widths))]
    lines += ["  ".join(str(row[key]).rjust(w) for (_, key), w in zip(COLUMNS, widths)) for row in rows]
    return "\n".join(lines)
