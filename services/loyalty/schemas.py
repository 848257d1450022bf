"""HTTP request and response models."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from services.loyalty.service.common import utc
from services.loyalty.service.rules import MAX_POINTS, RuleSetBody
from shared.events import Money
from shared.events.commerce import PurchaseLine

Utc = Annotated[datetime, AfterValidator(utc)]
"""A stored time, always reported in UTC with its offset."""


class MemberRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: str
    balance: int = Field(description="Every point the member holds: spendable + pending")
    spendable: int = Field(description="What redemptions can use now")
    pending: int = Field(description="Purchase points still in their lock period")
    lifetime_earned: int
    purchase_count: int
    tier: str | None
    tier_since: Utc | None
    merged_into: str | None
    updated_at: Utc


class LedgerEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    points: int
    balance_after: int
    reason: str
    source_event_id: str | None
    purchase_id: str | None
    rule_id: str | None
    rule_version: int | None
    operator: str | None
    reference: str | None
    occurred_at: Utc


class LedgerPage(BaseModel):
    items: list[LedgerEntryRead]
    next_before_id: int | None


class RedemptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward_id: str = Field(min_length=1, max_length=64)


class RedemptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    reward_id: str
    points: int
    code: str = Field(description="Show or scan at the till")
    status: str = Field(description="issued, used, cancelled or expired")
    created_at: Utc
    cancelled_at: Utc | None
    expires_at: Utc | None = Field(description="The code cannot be used from then on")
    used_at: Utc | None


class RedemptionPage(BaseModel):
    items: list[RedemptionRead]
    next_before: str | None = Field(description="Pass as ?before= for the next (older) page")


class AdjustmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(
        ge=-MAX_POINTS, le=MAX_POINTS, description="Positive credits, negative debits; never zero"
    )
    reason: str = Field(min_length=1, max_length=300)
    reference: str = Field(
        min_length=1, max_length=128, description="External reference; repeats are ignored"
    )


class AdjustmentRead(BaseModel):
    entry: LedgerEntryRead
    balance: int


class RewardWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    points_cost: int = Field(ge=1, le=MAX_POINTS)
    stock: int | None = Field(default=None, ge=0, le=MAX_POINTS, description="None = unlimited")
    active: bool = True
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    tiers: list[str] = Field(default_factory=list, description="Empty = every tier")


class RewardRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    points_cost: int
    stock: int | None
    active: bool
    valid_from: Utc | None
    valid_until: Utc | None
    tiers: list[str]


class RuleSetRead(BaseModel):
    version: int
    rules: RuleSetBody


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    total: Money
    lines: tuple[PurchaseLine, ...] = ()
    time: AwareDatetime | None = None
    customer_id: str | None = Field(default=None, max_length=64)
    tier: str | None = Field(default=None, max_length=64)


class ComponentRead(BaseModel):
    rule_id: str
    points: int
    reason: str


class SimulationRead(BaseModel):
    rule_version: int
    tier: str | None
    points: int
    components: list[ComponentRead]
    rewards_unlocked: list[str]


class LiabilityLine(BaseModel):
    key: str
    members: int | None
    points: int
    value: dict[str, Decimal]


class LiabilityRead(BaseModel):
    points: int
    value: dict[str, Decimal]
    point_value: dict[str, Decimal]
    by_tier: list[LiabilityLine]
    by_expiry_month: list[LiabilityLine]


class MonthPoints(BaseModel):
    month: str = Field(description="YYYY-MM, UTC")
    issued: int
    redeemed: int = Field(description="Net of cancellations and expired codes")
    expired: int
    reversed: int
    adjusted: int = Field(description="Operator adjustments and erasure forfeits, signed")


class LiabilityNow(BaseModel):
    points: int = Field(description="Positive balances, spendable and pending")
    value: str = Field(description="points x configured point value, decimal string")
    currency: str
    as_of: Utc


class TierMembers(BaseModel):
    tier: str
    members: int


class TierMovements(BaseModel):
    month: str
    upgrades: int
    downgrades: int


class TierRevenue(BaseModel):
    tier: str = Field(description="The member's tier when the purchase was made")
    orders: int
    revenue: str = Field(description="Gross purchase totals, decimal string")
    currency: str


class LoyaltyReportRead(BaseModel):
    report: str = "loyalty"
    start: str = Field(serialization_alias="from")
    end: str = Field(serialization_alias="to")
    generated_at: Utc
    months: list[MonthPoints]
    liability: LiabilityNow
    tiers: list[TierMembers]
    tier_movements: list[TierMovements]
    revenue_by_tier: list[TierRevenue]
