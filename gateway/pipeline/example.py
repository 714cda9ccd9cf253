"""The client code and serial the help of a refusal shows: the sender's own, or made up.

A known contact sees their own client code and one of that client's serials, so the
example subject can be copied as it is; anyone else sees an obviously made-up pair, never
a real client's code (a stranger learns nothing from a refusal). Never writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import Client, Licence, reference_key
from gateway.pipeline.grammar import Request

if TYPE_CHECKING:  # the unit of work refers to this module: its types only, no import cycle
    from gateway.pipeline.work import Sender


@dataclass(frozen=True)
class Example:
    code: str
    serial: str


MADE_UP = Example("C00000", "SN-0000-0000")


def for_sender(session: Session, sender: Sender, request: Request) -> Example:
    """The sender's client (the one the message named, when it is theirs) and its first
    active licence's serial (else any of its serials); `MADE_UP` for anyone else."""
    if not sender.contacts:
        return MADE_UP
    named = reference_key(request.fields.get("client", ""))
    contact = next((c for c in sender.contacts if c.client.code_key == named), sender.contacts[0])
    return of_client(session, contact.client)


def of_client(session: Session, client: Client) -> Example:
    """`client`'s code and its first active licence's serial (else any of its serials)."""
    serial = session.scalar(select(Licence.serial).where(Licence.client_id == client.id)
                            .order_by(Licence.active.desc(), Licence.id).limit(1))
    return Example(client.code, serial or MADE_UP.serial)
