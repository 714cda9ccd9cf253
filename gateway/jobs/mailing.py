"""The automatic mail of many cases, composed one by one and written all at once.

`Mailing` is the outbox (outbound/outbox.py) of a job acting on many cases in one
transaction: `post` composes each mail exactly as `common.post` does (same templates, same
rows), but keeps its rows; `write` inserts all the messages in one statement and all their
deliveries in another, instead of two statements per mail. Never commits.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert

from gateway import rows
from gateway.models import Case
from gateway.outbound import compose
from gateway.outbound.outbox import AUTO_GENERATED, Outbox, Recipient

ADD_MESSAGES = insert(rows.OUTBOUND).returning(rows.OUTBOUND.c.id, sort_by_parameter_order=True)


@dataclass
class Mailing(Outbox):
    """Automatic mail (Auto-Submitted: auto-generated) for many cases, written by `write`."""
    pending: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)

    def mail(self, kind: str, to: list[Recipient], cc: Sequence[Recipient], case: Case,
             context: dict[str, Any]) -> None:
        """What `common.post` sends about `case`, kept for `write`."""
        self.post(kind, to, list(cc), case=case, context=context, auto_submitted=AUTO_GENERATED)

    def write(self) -> None:
        """Every mail kept so far, and its deliveries: two statements."""
        if not self.pending:
            return
        ids = rows.new_ids(self.session, ADD_MESSAGES, [message for message, _ in self.pending])
        rows.add(self.session, rows.ADD_DELIVERIES, [dict(row, message_id=message_id) for message_id, (_, each)
                                                     in zip(ids, self.pending, strict=True) for row in each])
        self.pending = []

    def _write(self, kind: str, rendered: compose.Rendered, to: list[Recipient], cc: list[Recipient],
               recipients: list[Recipient], case: Case | None, auto_submitted: str,
               confirmation: int | None = None, audience: str = "") -> int:
        # The rows Outbox._write inserts at once, kept.
        self.pending.append(self._rows(kind, rendered, to, cc, recipients, case, auto_submitted,
                                       confirmation, audience))
        return -len(self.pending)  # no id before `write`: a mail of a job carries no file
