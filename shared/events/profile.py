"""Events owned by the profile service: the customer of record."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.events.base import Event, Payload
from shared.events.common import Language

PROFILE_TOPIC = "profile.events"


class CustomerDetails(Payload):
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    language: Language | None = None
    timezone: str | None = Field(default=None, description="IANA zone, e.g. Asia/Ho_Chi_Minh")


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


EVENTS: tuple[type[Event], ...] = (CustomerRegistered, CustomerUpdated)
