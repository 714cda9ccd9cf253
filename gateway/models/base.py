"""What every table shares: the declarative base, the status and outcome enums, folded keys."""
from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer
from sqlalchemy.orm import DeclarativeBase


class Status(StrEnum):
    """A case's status, in lifecycle order (gateway/cases.py moves a case between them)."""
    NEW = "nouveau"
    IN_PROGRESS = "en_cours"
    WAITING = "attente_client"
    RESOLVED = "resolu"
    CLOSED = "clos"


OPEN_STATUSES = (Status.NEW, Status.IN_PROGRESS, Status.WAITING, Status.RESOLVED)


class Disposition(StrEnum):
    """What became of a stored message (`inbound_messages.outcome`)."""
    PENDING = "pending"
    CREATED = "created"
    APPENDED = "appended"
    REFUSED = "refused"
    IGNORED = "ignored"
    HELD = "held"

BigId = BigInteger().with_variant(Integer(), "sqlite")


def reference_key(value: str) -> str:
    """A client code or serial folded for comparison: case, spaces, dashes and dots do not
    count, so "sn-7f3a-2291" and "SN 7F3A 2291" find "SN-7F3A-2291"."""
    folded = unicodedata.normalize("NFKC", value).casefold()
    return "".join(c for c in folded if not (c.isspace() or c == "." or unicodedata.category(c) == "Pd"))


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}
