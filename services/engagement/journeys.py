"""The journeys beyond the thank-you: one planning function per triggering event.

Each journey is classified: ``marketing`` messages count towards the frequency
cap, transactional ones (a receipt-like thank-you, a points-expiry notice) do
not. Delays are measured from the triggering event's time (event time), and the
sender sends by the wall clock; a step that comes due longer than
``max_lateness_seconds`` ago (a catch-up after downtime) is suppressed as stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import repository
from services.engagement.notices import publish_suppressed
from services.engagement.service import THANK_YOU, OutreachPlan, schedule_outreach, utc
from shared.events import Event
from shared.events.commerce import PurchaseCompleted
from shared.events.engagement import ChurnRiskChanged
from shared.events.loyalty import PointsExpiring, RewardUnlocked, TierChanged

TIER_UP = "tier_up"
MILESTONE_GIFT = "milestone_gift"
POINTS_EXPIRING = "points_expiring"
WIN_BACK = "win_back"
EXIT_PURCHASED = "exit: the customer purchased before it was due"


@dataclass(frozen=True, slots=True)
class Journey:
    name: str
    marketing: bool
    description: str


JOURNEYS = {
    j.name: j
    for j in (
        Journey(THANK_YOU, False, "right after a purchase: what they bought"),
        Journey(TIER_UP, True, "tier.changed upwards: congratulations and the new benefits"),
        Journey(MILESTONE_GIFT, True, "reward.unlocked: the gift and why"),
        Journey(POINTS_EXPIRING, False, "points.expiring: how many, and when"),
        Journey(WIN_BACK, True, "churn.risk_changed to high, after a delay; exits on a purchase"),
    )
}
MARKETING = tuple(name for name, j in JOURNEYS.items() if j.marketing)


async def _plan(
    session: AsyncSession,
    event: Event,
    *,
    journey: str,
    key: str,
    context: dict[str, Any],
    now: datetime,
    delay: timedelta = timedelta(0),
) -> bool:
    plan = OutreachPlan(
        customer_id=event.subject,
        journey=journey,
        template=journey,
        dedupe_key=f"{journey}:{key}",
        due_at=event.time + delay,
        trigger_event_id=event.id,
        context=context,
    )
    return await schedule_outreach(session, plan, now=now)


async def plan_tier_up(session: AsyncSession, event: TierChanged, *, now: datetime) -> bool:
    data = event.data
    if data.direction != "up":
        return False
    context = {"new_tier": data.new_tier, "benefits": list(data.benefits)}
    key = f"{event.subject}:{data.new_tier}:{event.id}"
    return await _plan(session, event, journey=TIER_UP, key=key, context=context, now=now)


async def plan_milestone_gift(
    session: AsyncSession, event: RewardUnlocked, *, now: datetime
) -> bool:
    context = {"reward_name": event.data.reward_name, "reason": event.data.reason}
    key = f"{event.subject}:{event.data.reward_id}:{event.id}"
    return await _plan(session, event, journey=MILESTONE_GIFT, key=key, context=context, now=now)


async def plan_points_expiring(
    session: AsyncSession, event: PointsExpiring, *, now: datetime
) -> bool:
    data = event.data
    expires = utc(data.expires_at)
    context = {
        "points": data.points,
        "balance": data.balance,
        "expires_on": expires.date().isoformat(),
    }
    key = f"{event.subject}:{expires.isoformat()}"
    return await _plan(session, event, journey=POINTS_EXPIRING, key=key, context=context, now=now)


async def plan_win_back(
    session: AsyncSession, event: ChurnRiskChanged, *, now: datetime, delay: timedelta
) -> bool:
    if event.data.band != "high" or event.data.previous_band == "high":
        return False
    context = {"risk": round(event.data.risk, 2)}
    return await _plan(
        session, event, journey=WIN_BACK, key=event.id, context=context, now=now, delay=delay
    )


async def exit_win_back(session: AsyncSession, event: PurchaseCompleted, *, now: datetime) -> int:
    """A purchase ends the customer's pending win-back: its reason is gone."""
    exited = await repository.suppress_pending(
        session, customer_id=event.subject, journey=WIN_BACK, reason=EXIT_PURCHASED
    )
    for outreach_id in exited:
        await publish_suppressed(session, outreach_id, now=now)
    return len(exited)
