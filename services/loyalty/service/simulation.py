"""What a purchase would earn under the rules in force, without writing anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.config import LoyaltySettings
from services.loyalty.service import rulebook
from services.loyalty.service.common import utc
from services.loyalty.service.rules import milestones_reached, quote_purchase
from shared.events.commerce import PurchaseLine


@dataclass(frozen=True)
class Component:
    rule_id: str
    points: int
    reason: str


@dataclass(frozen=True)
class Simulation:
    rule_version: int
    tier: str | None
    points: int
    components: list[Component]
    rewards_unlocked: list[str]


async def simulate(
    session: AsyncSession,
    *,
    amount: Decimal,
    currency: str,
    lines: tuple[PurchaseLine, ...],
    when: datetime,
    customer_id: str | None,
    tier: str | None,
    settings: LoyaltySettings,
) -> Simulation:
    rules = await rulebook.current(session, settings)
    member = await repository.get_member(session, customer_id) if customer_id else None
    tier = member.tier if member is not None else tier
    quote = quote_purchase(
        rules, amount=amount, currency=currency, lines=lines, when=utc(when), tier=tier
    )
    parts = [Component("base", quote.base, f"{rules.rate(currency)} pt/unit")]
    for campaign, bonus in quote.campaigns:
        left = bonus
        for budget, owner in ((campaign.member_budget, customer_id), (campaign.global_budget, "*")):
            if budget is not None and owner is not None:
                used = await repository.campaign_used(session, campaign.id, owner)
                left = min(left, budget - used)
        parts.append(Component(f"campaign:{campaign.id}", max(0, left), campaign.name))
    count = (member.purchase_count if member is not None else 0) + 1
    unlocked = []
    for milestone in milestones_reached(rules, count):
        parts.append(Component(f"milestone:{milestone.id}", milestone.points, f"purchase {count}"))
        if milestone.reward_name:
            unlocked.append(milestone.reward_name)
    parts = [p for p in parts if p.points > 0]
    resolved = rules.tier(tier)
    return Simulation(
        rule_version=rules.version,
        tier=resolved.name if resolved is not None else None,
        points=sum(p.points for p in parts),
        components=parts,
        rewards_unlocked=unlocked,
    )
