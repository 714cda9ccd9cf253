"""Typed tables: reference data, cases and their timeline, inbound messages, the outbox.

The same schema runs on SQLite and PostgreSQL; the Alembic migrations in
`gateway/migrations/` create it. Timestamps are stored as naive UTC. One module per family
of tables; everything is importable from `gateway.models`.
"""
from gateway.models.base import OPEN_STATUSES, Base, BigId, Disposition, Status, reference_key
from gateway.models.cases import Attachment, Case, CaseEvent, DistributionEntry
from gateway.models.mail import (
    DELIVERY_FAILED,
    DELIVERY_HELD_BACK,
    DELIVERY_MERGED,
    DELIVERY_PENDING,
    DELIVERY_SENT,
    Delivery,
    InboundMessage,
    OutboundFile,
    OutboundMessage,
)
from gateway.models.records import (
    Confirmation,
    Escalation,
    LicenceExpiry,
    LicenceNotice,
    LicenceRefusal,
    Registration,
    RegistrationRequest,
    Reminder,
    SalesAlert,
    SalesDigest,
    State,
)
from gateway.models.reference import (
    CONTACT_ACTIVE,
    CONTACT_INACTIVE,
    CONTACT_PENDING,
    Agent,
    Client,
    Contact,
    Contract,
    Licence,
    PointsEntry,
)

__all__ = [
    "CONTACT_ACTIVE", "CONTACT_INACTIVE", "CONTACT_PENDING", "DELIVERY_FAILED", "DELIVERY_HELD_BACK",
    "DELIVERY_MERGED", "DELIVERY_PENDING", "DELIVERY_SENT",
    "OPEN_STATUSES", "Agent", "Attachment", "Base", "BigId", "Case", "CaseEvent", "Client",
    "Confirmation", "Contact", "Contract", "Delivery", "DistributionEntry", "Disposition",
    "Escalation", "InboundMessage", "Licence", "LicenceExpiry", "LicenceNotice", "LicenceRefusal", "OutboundFile",
    "OutboundMessage", "PointsEntry", "Registration", "RegistrationRequest", "Reminder",
    "SalesAlert", "SalesDigest", "State", "Status", "reference_key",
]
