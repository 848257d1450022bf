"""The CloudEvents 1.0 envelope every Keepwell event travels in.

Structured JSON mode: one JSON object holding the context attributes and ``data``.
The Kafka message key is the customer id (``subject``), so one customer's events
stay in order on one partition. ``time`` is the event's own time (when it happened
at the till or in the app), which lets history be imported and replayed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SPEC_VERSION = "1.0"
CONTRACT_VERSION = "1"


def _require_tz(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone offset (e.g. 2026-01-31T10:00:00Z)")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_require_tz)]
CustomerId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]


class Payload(BaseModel):
    """Base of every ``data`` model: immutable, tolerant of fields added later."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Money(Payload):
    """An exact amount in one currency. Send the amount as a string ("12.50")."""

    amount: Decimal = Field(max_digits=18, decimal_places=4, ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. VND, EUR")


class Event(BaseModel):
    """CloudEvents 1.0 context attributes shared by every event type.

    Subclasses pin ``type`` to a literal (the discriminator), set ``data`` to
    their payload model and name their topic in ``TOPIC``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    TOPIC: ClassVar[str]

    specversion: str = Field(default=SPEC_VERSION, pattern=r"^1\.0$")
    id: str = Field(min_length=1, max_length=128, description="Unique per source; a UUID")
    source: str = Field(min_length=1, max_length=256, description="Producer, e.g. /pos/store-12")
    type: str
    time: AwareDatetime = Field(description="When it happened (event time, RFC 3339)")
    subject: CustomerId = Field(description="The customer id; also the Kafka message key")
    datacontenttype: str = "application/json"
    dataversion: str = Field(
        default=CONTRACT_VERSION, description="Major version of the data schema for this type"
    )
    data: Any

    @property
    def occurred_at(self) -> datetime:
        return self.time

    @classmethod
    def create(
        cls,
        *,
        subject: str,
        data: Any,
        source: str,
        time: datetime | None = None,
        id: str | None = None,
    ) -> Self:
        """Build an event with a fresh id (or a caller-chosen deterministic one)."""
        event_type = cls.model_fields["type"].default
        return cls(
            id=id or str(uuid.uuid4()),
            source=source,
            type=event_type,
            time=time or datetime.now(UTC),
            subject=subject,
            data=data,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @property
    def key(self) -> bytes:
        return self.subject.encode()


def derived_id(*parts: str) -> str:
    """A deterministic event id for an event caused by another one.

    Re-running the same handler on the same input yields the same id, so a
    downstream consumer's de-duplication catches it even across re-publishes.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "keepwell:" + ":".join(parts)))
