"""The earning rules: a versioned document, and the pure arithmetic on it.

Rounding: every component (base with its multipliers, each campaign bonus) is
computed exactly in decimals and rounded *down* to a whole point once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.events.commerce import PurchaseLine

MAX_POINTS = 1_000_000_000
"""The most any single rule, reward or adjustment may move (keeps sums in 64 bits)."""


Rate = Annotated[Decimal, Field(ge=0, le=1_000_000)]
Multiplier = Annotated[Decimal, Field(ge=0, le=100)]
Points = Annotated[int, Field(ge=0, le=MAX_POINTS)]


class RuleModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Campaign(RuleModel):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    multiplier: Decimal = Field(
        default=Decimal(0), ge=0, le=100, description="Extra points per base point (1 = double)"
    )
    bonus_points: int = Field(default=0, ge=0, le=MAX_POINTS, description="Bonus per purchase")
    member_budget: int | None = Field(default=None, ge=0, le=MAX_POINTS, description="Per member")
    global_budget: int | None = Field(default=None, ge=0, description="Max points in total")

    def active_at(self, when: datetime) -> bool:
        return self.starts_at <= when < self.ends_at


class Milestone(RuleModel):
    id: str = Field(min_length=1, max_length=64)
    nth_purchase: int = Field(ge=1, description="1 = the first purchase")
    points: int = Field(default=0, ge=0, le=MAX_POINTS)
    reward_name: str | None = Field(default=None, max_length=200, description="Gift unlocked")


class Tier(RuleModel):
    name: str = Field(min_length=1, max_length=64)
    threshold: int = Field(ge=0, description="Qualifying amount over the window")
    multiplier: Decimal = Field(default=Decimal(1), ge=0, le=100)
    perks: list[str] = Field(default_factory=list)


class TierPolicy(RuleModel):
    basis: Literal["earned", "spend"] = "earned"
    window_days: int = Field(default=365, ge=1)
    downgrade: Literal["none", "window_end", "grace"] = "window_end"
    grace_days: int = Field(default=0, ge=0)


class RuleSetBody(RuleModel):
    points_per_unit: Decimal = Field(default=Decimal(1), ge=0, le=1_000_000)
    points_per_unit_by_currency: dict[str, Rate] = Field(default_factory=dict)
    category_multipliers: dict[str, Multiplier] = Field(default_factory=dict)
    sku_multipliers: dict[str, Multiplier] = Field(default_factory=dict)
    campaigns: list[Campaign] = Field(default_factory=list)
    milestones: list[Milestone] = Field(default_factory=list)
    interaction_points: dict[Literal["review", "referral"], Points] = Field(default_factory=dict)
    tiers: list[Tier] = Field(default_factory=list)
    tier_policy: TierPolicy = TierPolicy()
    expiry_days: int | None = Field(default=365, ge=1, description="None = points never expire")
    expiring_notice_days: int = Field(default=30, ge=0)
    pending_days: int | None = Field(
        default=None, ge=1, description="Purchase points spendable only this long after it"
    )
    redemption_code_days: int | None = Field(
        default=None, ge=1, description="A redemption code unused this long expires"
    )
    birthday_bonus: int | None = Field(
        default=None,
        ge=1,
        le=MAX_POINTS,
        description="Points each member earns on their birthday, once a year; None = off",
    )

    @model_validator(mode="after")
    def _check(self) -> RuleSetBody:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        if self.tiers and min(t.threshold for t in self.tiers) != 0:
            raise ValueError("the lowest tier must have threshold 0")
        ids = [c.id for c in self.campaigns] + [m.id for m in self.milestones]
        if len(set(ids)) != len(ids):
            raise ValueError("campaign and milestone ids must be unique")
        if any(c.ends_at <= c.starts_at for c in self.campaigns):
            raise ValueError("a campaign must end after it starts")
        if self.pending_days and self.expiry_days and self.pending_days >= self.expiry_days:
            raise ValueError("pending_days must be shorter than expiry_days")
        return self


@dataclass(frozen=True)
class Rules:
    """A rule set in force: its version and body."""

    version: int
    body: RuleSetBody

    def rate(self, currency: str) -> Decimal:
        return self.body.points_per_unit_by_currency.get(currency, self.body.points_per_unit)

    def line_multiplier(self, line: PurchaseLine) -> Decimal:
        if line.sku in self.body.sku_multipliers:
            return self.body.sku_multipliers[line.sku]
        if line.category is not None and line.category in self.body.category_multipliers:
            return self.body.category_multipliers[line.category]
        return Decimal(1)

    def sorted_tiers(self) -> list[Tier]:
        return sorted(self.body.tiers, key=lambda t: t.threshold)

    def tier(self, name: str | None) -> Tier | None:
        tiers = self.sorted_tiers()
        if name is None:
            return tiers[0] if tiers else None
        return next((t for t in tiers if t.name == name), tiers[0] if tiers else None)

    def tier_for(self, qualifying: Decimal | int) -> Tier | None:
        eligible = [t for t in self.sorted_tiers() if t.threshold <= qualifying]
        return eligible[-1] if eligible else None

    def rank(self, name: str | None) -> int:
        tier = self.tier(name)
        return self.sorted_tiers().index(tier) if tier is not None else 0


def floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


@dataclass
class Quote:
    """What a purchase earns before budgets: exact base, rounded base, campaign bonuses."""

    base_exact: Decimal
    base: int
    tier_multiplier: Decimal
    line_weights: dict[str, Decimal] = field(default_factory=dict)
    campaigns: list[tuple[Campaign, int]] = field(default_factory=list)


def quote_purchase(
    rules: Rules,
    *,
    amount: Decimal,
    currency: str,
    lines: tuple[PurchaseLine, ...],
    when: datetime,
    tier: str | None,
) -> Quote:
    rate = rules.rate(currency)
    weights = _line_weights(rules, amount, lines)
    base_exact = rate * (sum(weights.values(), Decimal(0)) if weights else amount)
    tier_rule = rules.tier(tier)
    tier_mult = tier_rule.multiplier if tier_rule is not None else Decimal(1)
    quote = Quote(base_exact, floor(base_exact * tier_mult), tier_mult, weights)
    for campaign in rules.body.campaigns:
        if campaign.active_at(when):
            bonus = floor(base_exact * campaign.multiplier) + campaign.bonus_points
            if bonus > 0:
                quote.campaigns.append((campaign, bonus))
    return quote


def _line_weights(
    rules: Rules, amount: Decimal, lines: tuple[PurchaseLine, ...]
) -> dict[str, Decimal]:
    """Per SKU: the paid amount it stands for (lines scaled to the total) times its multiplier."""
    listed = sum((line.unit_price * line.quantity for line in lines), Decimal(0))
    if not lines or listed <= 0:
        return {}
    share = amount / listed
    weights: dict[str, Decimal] = {}
    for line in lines:
        value = line.unit_price * line.quantity * share * rules.line_multiplier(line)
        weights[line.sku] = weights.get(line.sku, Decimal(0)) + value
    return weights


def unit_points(
    points: int, weights: dict[str, Decimal], lines: tuple[PurchaseLine, ...]
) -> dict[str, str]:
    """Exact points one unit of each SKU stands for, so a per-line refund is fair."""
    total = sum(weights.values(), Decimal(0))
    if total <= 0:
        return {}
    quantities: dict[str, int] = {}
    for line in lines:
        quantities[line.sku] = quantities.get(line.sku, 0) + line.quantity
    return {
        sku: str(Decimal(points) * weight / total / quantities[sku])
        for sku, weight in weights.items()
    }


def milestones_reached(rules: Rules, purchase_count: int) -> list[Milestone]:
    return [m for m in rules.body.milestones if m.nth_purchase == purchase_count]
