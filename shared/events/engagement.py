"""Events owned by the engagement service: outreach and scores."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.events.base import Event, Payload

ENGAGEMENT_TOPIC = "engagement.events"

OutreachChannel = Literal["email", "sms", "push", "chat"]


class OutreachSentData(Payload):
    outreach_id: str
    journey: str = Field(description="e.g. thank_you, win_back")
    channel: OutreachChannel
    template: str
    trigger_event_id: str | None = None


class OutreachSent(Event):
    """A message left Keepwell and was accepted by the channel's provider."""

    TOPIC: ClassVar[str] = ENGAGEMENT_TOPIC
    type: Literal["outreach.sent"] = "outreach.sent"
    data: OutreachSentData


EVENTS: tuple[type[Event], ...] = (OutreachSent,)
