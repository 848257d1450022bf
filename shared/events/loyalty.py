"""Events owned by the loyalty service: points, tiers and rewards."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.events.base import Event, Payload

LOYALTY_TOPIC = "loyalty.events"


class PointsEarnedData(Payload):
    points: int = Field(gt=0)
    balance: int = Field(description="Spendable balance after this entry")
    reason: str = Field(description="Why: the rule that awarded the points")
    source_event_id: str
    purchase_id: str | None = None


class PointsEarned(Event):
    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["points.earned"] = "points.earned"
    data: PointsEarnedData


EVENTS: tuple[type[Event], ...] = (PointsEarned,)
