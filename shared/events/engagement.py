"""Events owned by the engagement service: outreach and scores."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import Field

from shared.events.base import Event, Payload

ENGAGEMENT_TOPIC = "engagement.events"

OutreachChannel = Literal["email", "sms", "push", "chat"]
RiskBand = Literal["low", "medium", "high"]


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


class OutreachFailedData(Payload):
    outreach_id: str
    journey: str
    channel: OutreachChannel
    error: str
    attempts: int


class OutreachFailed(Event):
    """A message could not be delivered after its retries."""

    TOPIC: ClassVar[str] = ENGAGEMENT_TOPIC
    type: Literal["outreach.failed"] = "outreach.failed"
    data: OutreachFailedData


class OutreachSuppressedData(Payload):
    outreach_id: str
    journey: str
    reason: str = Field(description="e.g. opted out of every channel, frequency cap")


class OutreachSuppressed(Event):
    """A message was deliberately not sent."""

    TOPIC: ClassVar[str] = ENGAGEMENT_TOPIC
    type: Literal["outreach.suppressed"] = "outreach.suppressed"
    data: OutreachSuppressedData


class OutreachDeferredData(Payload):
    outreach_id: str
    journey: str
    reason: str = Field(description="e.g. quiet hours")
    until: datetime = Field(description="When the message becomes due again")


class OutreachDeferred(Event):
    """A due message was held back, not dropped (e.g. the customer's quiet hours)."""

    TOPIC: ClassVar[str] = ENGAGEMENT_TOPIC
    type: Literal["outreach.deferred"] = "outreach.deferred"
    data: OutreachDeferredData


class ChurnRiskChangedData(Payload):
    risk: float = Field(ge=0, le=1)
    band: RiskBand
    previous_band: RiskBand | None = None
    reasons: list[str] = Field(default_factory=list)
    clv: Decimal | None = Field(default=None, description="Expected value over the CLV horizon")
    currency: str | None = None


class ChurnRiskChanged(Event):
    """A customer's churn-risk band changed (not sent on every re-score)."""

    TOPIC: ClassVar[str] = ENGAGEMENT_TOPIC
    type: Literal["churn.risk_changed"] = "churn.risk_changed"
    data: ChurnRiskChangedData


EVENTS: tuple[type[Event], ...] = (
    OutreachSent,
    OutreachFailed,
    OutreachSuppressed,
    OutreachDeferred,
    ChurnRiskChanged,
)
