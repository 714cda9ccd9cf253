"""The sender's bookkeeping of deliveries (send.py): a batch claimed under a random owner
id, each claim renewed just before its delivery is sent, and the result recorded only
while the claim still holds it, so that two senders never send or record one twice.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from gateway import accounts
from gateway.config import Settings
from gateway.db import session_scope
from gateway.models import DELIVERY_FAILED, DELIVERY_PENDING, DELIVERY_SENT, Delivery

log = logging.getLogger(__name__)
RETRY_MINUTES = (1, 5, 15, 30, 60, 120, 240, 480)
# Around each write transaction: `serve` makes its pipeline give way meanwhile (gateway/worker.py).
Turn = Callable[[], AbstractContextManager[object]]


@dataclass(frozen=True)
class Claim:
    """Deliveries locked by one sender for one batch; `owner` is stored beside each lock."""
    owner: str
    ids: list[int]


def claim(engine: Engine, now: dt.datetime, lock: dt.timedelta, limit: int = 50,
          turn: Turn = contextlib.nullcontext) -> Claim:
    """Lock up to `limit` due deliveries for this sender until `now + lock`, under a new
    owner id; two senders never share one."""
    owner = secrets.token_hex(16)
    # One statement that reads and locks: on SQLite a read followed by a write fails when
    # another sender wrote in between; on PostgreSQL SKIP LOCKED keeps two senders apart.
    due = (select(Delivery.id).where(Delivery.status == DELIVERY_PENDING, Delivery.next_attempt_at <= now,
                                     or_(Delivery.locked_until.is_(None), Delivery.locked_until < now))
           .order_by(Delivery.id).limit(limit).with_for_update(skip_locked=True))
    with turn(), session_scope(engine) as session:
        ids = session.scalars(update(Delivery).where(Delivery.id.in_(due.scalar_subquery()))
                              .values(locked_until=now + lock, claim=owner).returning(Delivery.id))
        return Claim(owner, sorted(ids))


def hold(session: Session, delivery_id: int, owner: str, now: dt.datetime, lock: dt.timedelta) -> bool:
    """Renew the claim `owner` on one delivery until `now + lock`, just before it is sent;
    False when another sender claimed it since (its lock had expired) or it is done."""
    renewed = session.execute(update(Delivery).where(
        Delivery.id == delivery_id, Delivery.claim == owner, Delivery.status == DELIVERY_PENDING)
        .values(locked_until=now + lock).execution_options(synchronize_session=False))
    return bool(renewed.rowcount == 1)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Failure:
    """Why a delivery was not sent: the relay's reply or the error, whether it is for good,
    and whether the relay refused the address itself (the contact is then failing)."""
    error: str
    permanent: bool = False
    address_refused: bool = False


def record(engine: Engine, settings: Settings, delivery_id: int, owner: str, now: dt.datetime,
           failure: Failure | None, renew: int | None = None) -> tuple[str | None, bool]:
    """Mark a delivery sent, due again later, or failed, if the claim `owner` still holds
    it: its new status, or None (and nothing changed) when another sender does. A recipient
    the relay refused for good at RCPT marks the contact failing, as a delivery report does.
    `renew`: the next delivery of the batch, whose claim is renewed in the same transaction
    (one write per delivery); the second value says whether it still was the claim's."""
    with session_scope(engine) as session:
        status = _record(session, settings, delivery_id, owner, now, failure)
        return status, renew is not None and hold(session, renew, owner, now, lock(settings))


def _record(session: Session, settings: Settings, delivery_id: int, owner: str, now: dt.datetime,
            failure: Failure | None) -> str | None:
    done: dict[str, object] = {"attempts": Delivery.attempts + 1, "locked_until": None, "claim": None}
    if failure is None:  # the usual case: one statement
        done.update(status=DELIVERY_SENT, sent_at=now, last_error=None)
    # A write first, for the same reason as in `claim`; it releases the lock.
    held = session.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.claim == owner)
                           .values(done).execution_options(synchronize_session=False))
    if held.rowcount != 1:  # type: ignore[attr-defined]
        log.warning("delivery %s was claimed by another sender meanwhile: its result is theirs", delivery_id)
        return None
    if failure is None:
        return DELIVERY_SENT
    delivery = session.get(Delivery, delivery_id)
    assert delivery is not None
    delivery.last_error = failure.error[:2000]
    give_up = delivery.created_at + dt.timedelta(hours=settings.outbound.give_up_after_hours)
    delay = dt.timedelta(minutes=RETRY_MINUTES[min(delivery.attempts, len(RETRY_MINUTES)) - 1])
    if failure.permanent or now + delay > give_up:
        delivery.status = DELIVERY_FAILED
        log.warning("delivery %s to %s set aside: %s", delivery_id, delivery.recipient, failure.error)
    else:
        delivery.next_attempt_at = now + delay
    if failure.address_refused:
        accounts.mark_failing(session, [delivery.recipient.lower()], now)
    return delivery.status


def lock(settings: Settings) -> dt.timedelta:
    """How long a claim holds a delivery."""
    return dt.timedelta(seconds=settings.outbound.claim_seconds)
