"""Small value types several owners' events share."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.events.base import Payload

Channel = Literal["store", "web", "app", "phone", "chat", "email", "sms", "push", "social", "other"]
"""Where a customer did something, across every touchpoint."""

Language = Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$", examples=["vi", "en"])]


class ContactHint(Payload):
    """Contact details captured at a till or checkout, all optional.

    Profile uses them to enrich the customer of record; other services read
    contact details from profile's events, never from here.
    """

    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, max_length=32)
    language: Language | None = None
