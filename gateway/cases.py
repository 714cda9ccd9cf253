"""The case lifecycle, in one place: opening a case, its timeline and files, and moving it
from one status to another through the transition table below.

Statuses, in lifecycle order: nouveau → en_cours → attente_client → resolu → clos. Every
rule (gateway/rules/) and every job (gateway/jobs/) changes a case through these functions.
Never commits.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from gateway import rows
from gateway.models import Case, Client, Contact, Licence, Status
from gateway.outbound.outbox import StoredFile
from gateway.pipeline.parse import Attachment as ParsedAttachment


class Move(StrEnum):
    """What happens to a case."""
    ANSWER = "answer"        # an agent answers, without a status tag
    WAIT = "wait"            # [ATTENTE]: an agent waits for the customer
    RESOLVE = "resolve"      # [RESOLU]
    CLOSE = "close"          # [CLOS], [CLOTURE], or a job closing it
    CUSTOMER = "customer"    # a customer writes on it


# Where each move takes a case from each status. RESUME is the status a case returns to when
# a customer writes on it: en_cours once an agent has answered, nouveau before.
RESUME = "resume"
FILES_PER_STATEMENT = 1_000_000   # bytes of files stored by one INSERT (one file at least)
TRANSITIONS: dict[Move, dict[Status, Status | str]] = {
    Move.ANSWER: {Status.NEW: Status.IN_PROGRESS, Status.IN_PROGRESS: Status.IN_PROGRESS,
                  Status.WAITING: Status.IN_PROGRESS, Status.RESOLVED: Status.IN_PROGRESS,
                  Status.CLOSED: Status.CLOSED},
    Move.WAIT: dict.fromkeys(Status, Status.WAITING),
    Move.RESOLVE: dict.fromkeys(Status, Status.RESOLVED),
    Move.CLOSE: dict.fromkeys(Status, Status.CLOSED),
    Move.CUSTOMER: {Status.NEW: Status.NEW, Status.IN_PROGRESS: Status.IN_PROGRESS,
                    Status.WAITING: RESUME, Status.RESOLVED: RESUME, Status.CLOSED: RESUME},
}


@dataclass(frozen=True)
class Change:
    before: Status
    after: Status

    @property
    def changed(self) -> bool:
        return self.before != self.after


def move(case: Case, by: Move, now: dt.datetime) -> Change:
    """Move `case` as the table says, and keep its dates: when it started waiting, when it
    closed, when it last changed."""
    before = Status(case.status)
    target = TRANSITIONS[by][before]
    after = (Status.IN_PROGRESS if case.first_agent_at else Status.NEW) if target == RESUME else Status(target)
    case.status = after
    if after is not Status.WAITING:
        case.waiting_since = None
    elif before is not Status.WAITING:
        case.waiting_since = now
    if after is not Status.CLOSED:
        case.closed_at = None
    elif before is not Status.CLOSED:
        case.closed_at = now
    if by is Move.CUSTOMER:
        case.last_customer_at = now
    case.updated_at = now
    return Change(before, after)


def open_case(session: Session, *, client: Client, contact: Contact, licence: Licence, module: str | None,
              criticality: int, title: str, thread_id: str, now: dt.datetime) -> Case:
    """A new case (status nouveau), written so it has its number; its first event and its
    distribution list are the caller's. The row is written by a Core statement and the case
    joins the session as if read back (the unit of work would cost a flush of its own)."""
    values: dict[str, object] = dict.fromkeys(rows.CASES.c.keys())
    values.update(client_id=client.id, licence_id=licence.id, module=module, criticality=criticality,
                  priority=False, title=title[:500], status=Status.NEW, main_contact_id=contact.id,
                  thread_id=thread_id, opened_at=now, updated_at=now, last_customer_at=now)
    del values["id"]
    case = Case(id=rows.new_id(session, rows.ADD_CASE, values), **values)
    case.client, case.licence, case.main_contact = client, licence, contact
    make_transient_to_detached(case)
    set_committed_value(case, "distribution", [])
    session.add(case)
    return case


def event(session: Session, case: Case, kind: str, *, author: str, text: str, now: dt.datetime,
          inbound_id: int | None = None, internal: bool = False, wanted: bool = True) -> int | None:
    """Append an event to the case's timeline; its id, or None when not `wanted` (the row
    is then sent `later`: nobody waits for its answer). A Core insert: the timeline is
    append-only and this is on the path of every message."""
    values = dict(case_id=case.id, kind=kind, author=author, at=now, text=text, internal=internal,
                  inbound_id=inbound_id)
    if not wanted:
        rows.ADD_EVENT_LATER.later(session, [values])
        return None
    return rows.ADD_EVENT.add(session, values)


def _batches(files: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The rows in statements of at most `FILES_PER_STATEMENT` bytes of data (a file bigger
    than that alone): a statement holds its files several times over while it runs (the
    bound parameters, the row as the database builds it, its pages)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row in files:
        if batch and size + len(row["data"]) > FILES_PER_STATEMENT:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += len(row["data"])
    if batch:
        yield batch


def store_files(session: Session, case: Case, event_id: int | None,
                attachments: Sequence[ParsedAttachment]) -> list[StoredFile]:
    """Keep a message's files on the case's event, with their size and SHA-256; what the
    outbox needs to carry them along. `event_id` may be None only without files."""
    files = [dict(case_id=case.id, event_id=event_id, filename=att.filename[:255],
                  content_type=att.content_type[:255], size=len(att.data),
                  sha256=hashlib.sha256(att.data).hexdigest(), data=att.data, inline=att.inline)
             for att in attachments]
    if not files:
        return []
    assert event_id is not None, "files need their event"
    ids = [i for batch in _batches(files) for i in rows.new_ids(session, rows.ADD_FILES, batch)]
    return [StoredFile(i, att.filename[:255], att.content_type[:255], len(att.data), att.inline)
            for i, att in zip(ids, attachments, strict=True)]
