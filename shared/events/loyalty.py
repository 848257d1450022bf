"""Events owned by the loyalty service: points, tiers and rewards."""

from __future__ import annotations

from datetime import datetime
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
    rule_id: str | None = None
    pending_until: datetime | None = Field(
        default=None, description="Set when the points are locked until this time"
    )


class PointsEarned(Event):
    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["points.earned"] = "points.earned"
    data: PointsEarnedData


class PointsReleasedData(Payload):
    points: int = Field(gt=0, description="Points that just became spendable")
    balance: int = Field(description="Spendable balance after the release")
    pending: int = Field(ge=0, description="Points still locked")


class PointsReleased(Event):
    """Pending points reached the end of their lock period and can be spent now."""

    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["points.released"] = "points.released"
    data: PointsReleasedData


class PointsRedeemedData(Payload):
    points: int = Field(gt=0)
    balance: int
    redemption_id: str
    reward_id: str
    reward_name: str | None = None


class PointsRedeemed(Event):
    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["points.redeemed"] = "points.redeemed"
    data: PointsRedeemedData


class PointsReversedData(Payload):
    points: int = Field(gt=0, description="Points taken back")
    balance: int
    reason: str
    source_event_id: str
    purchase_id: str | None = None
    refund_id: str | None = None


class PointsReversed(Event):
    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["points.reversed"] = "points.reversed"
    data: PointsReversedData


class PointsExpiringData(Payload):
    points: int = Field(gt=0)
    expires_at: datetime
    balance: int


class PointsExpiring(Event):
    """Some points will expire soon: a reminder is due."""

    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["points.expiring"] = "points.expiring"
    data: PointsExpiringData


class PointsExpiredData(Payload):
    points: int = Field(gt=0)
    balance: int


class PointsExpired(Event):
    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["points.expired"] = "points.expired"
    data: PointsExpiredData


class TierChangedData(Payload):
    old_tier: str | None = None
    new_tier: str
    direction: Literal["up", "down"]
    reason: str
    benefits: list[str] = Field(default_factory=list)
    multiplier: str | None = Field(default=None, description="Earning multiplier, decimal string")


class TierChanged(Event):
    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["tier.changed"] = "tier.changed"
    data: TierChangedData


class RewardUnlockedData(Payload):
    reward_id: str
    reward_name: str
    reason: str = Field(description="e.g. milestone: 10th purchase")


class RewardUnlocked(Event):
    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["reward.unlocked"] = "reward.unlocked"
    data: RewardUnlockedData


class RedemptionCancelledData(Payload):
    redemption_id: str
    points: int = Field(gt=0, description="Points restored")
    balance: int
    reason: Literal["cancelled", "code_expired"] = Field(
        default="cancelled", description="An operator cancelled it, or its code expired unused"
    )


class RedemptionCancelled(Event):
    TOPIC: ClassVar[str] = LOYALTY_TOPIC
    type: Literal["redemption.cancelled"] = "redemption.cancelled"
    data: RedemptionCancelledData


EVENTS: tuple[type[Event], ...] = (
    PointsEarned,
    PointsReleased,
    PointsRedeemed,
    PointsReversed,
    PointsExpiring,
    PointsExpired,
    TierChanged,
    RewardUnlocked,
    RedemptionCancelled,
)
