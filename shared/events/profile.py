"""Events owned by the profile service: the customer of record."""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar, Literal

from pydantic import Field

from shared.events.base import Event, Payload
from shared.events.common import Language

PROFILE_TOPIC = "profile.events"

ContactChannel = Literal["email", "sms", "push", "chat"]
ConsentStatus = Literal["opt_in", "opt_out"]


class QuietHours(Payload):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["21:00"])
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["08:00"])


class CustomerDetails(Payload):
    """The customer's contact details and preferences as profile holds them now."""

    name: str | None = None
    email: str | None = None
    phone: str | None = Field(default=None, description="E.164, e.g. +84901234567")
    language: Language | None = None
    timezone: str | None = Field(default=None, description="IANA zone, e.g. Asia/Ho_Chi_Minh")
    consents: dict[ContactChannel, ConsentStatus] = Field(
        default_factory=dict,
        description="Per channel; a channel not listed has no recorded consent",
    )
    preferred_channel: ContactChannel | None = None
    quiet_hours: QuietHours | None = None
    birthday: date | None = Field(
        default=None, description="Calendar date of birth (YYYY-MM-DD); absent when unknown"
    )


class CustomerRegistered(Event):
    """Profile saw a customer for the first time."""

    TOPIC: ClassVar[str] = PROFILE_TOPIC
    type: Literal["customer.registered"] = "customer.registered"
    data: CustomerDetails


class CustomerUpdated(Event):
    """A customer's contact details or preferences changed; ``data`` is the new state."""

    TOPIC: ClassVar[str] = PROFILE_TOPIC
    type: Literal["customer.updated"] = "customer.updated"
    data: CustomerDetails


class ConsentChangedData(Payload):
    channel: ContactChannel
    status: ConsentStatus
    source: str = Field(description="Where the change came from, e.g. web-preferences, pos")
    changed_at: datetime


class ConsentChanged(Event):
    TOPIC: ClassVar[str] = PROFILE_TOPIC
    type: Literal["consent.changed"] = "consent.changed"
    data: ConsentChangedData


class CustomerMergedData(Payload):
    merge_id: str
    merged_id: str = Field(description="The customer id that ceased to exist; subject survives")


class CustomerMerged(Event):
    """Two customers were one person: ``data.merged_id`` now lives on as ``subject``."""

    TOPIC: ClassVar[str] = PROFILE_TOPIC
    type: Literal["customer.merged"] = "customer.merged"
    data: CustomerMergedData


class CustomerUnmergedData(Payload):
    merge_id: str
    restored_id: str = Field(description="The customer id brought back as its own customer")
    restored: CustomerDetails | None = Field(
        default=None,
        description=(
            "The restored customer's details and consents, as customer.updated would carry"
            " them: services that folded them into the survivor take them back in order"
        ),
    )


class CustomerUnmerged(Event):
    """An operator undid a merge; ``data.restored_id`` is a separate customer again."""

    TOPIC: ClassVar[str] = PROFILE_TOPIC
    type: Literal["customer.unmerged"] = "customer.unmerged"
    data: CustomerUnmergedData


class CustomerErasedData(Payload):
    reason: str | None = Field(default=None, max_length=200)


class CustomerErased(Event):
    """Erase this customer's personal data everywhere (amounts may stay, anonymised)."""

    TOPIC: ClassVar[str] = PROFILE_TOPIC
    type: Literal["customer.erased"] = "customer.erased"
    data: CustomerErasedData


class SegmentChangeData(Payload):
    segment: str


class SegmentEntered(Event):
    TOPIC: ClassVar[str] = PROFILE_TOPIC
    type: Literal["segment.entered"] = "segment.entered"
    data: SegmentChangeData


class SegmentExited(Event):
    TOPIC: ClassVar[str] = PROFILE_TOPIC
    type: Literal["segment.exited"] = "segment.exited"
    data: SegmentChangeData


EVENTS: tuple[type[Event], ...] = (
    CustomerRegistered,
    CustomerUpdated,
    ConsentChanged,
    CustomerMerged,
    CustomerUnmerged,
    CustomerErased,
    SegmentEntered,
    SegmentExited,
)
