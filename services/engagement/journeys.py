"""The journeys beyond the thank-you: one planning function per triggering event.

Each journey is classified (``catalog``): ``marketing`` messages count towards the
frequency cap, transactional ones do not. A journey's settings (enabled, delay,
channel order, template) come from ``journey_config`` at planning time. Delays
are measured from the triggering event's time (event time), and the sender
sends by the wall clock; a step that comes due longer than the journey's maximum
lateness ago (a catch-up after downtime) is suppressed as stale.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import prefetch, repository
from services.engagement.catalog import (
    JOURNEYS,
    MARKETING,
    MILESTONE_GIFT,
    POINTS_EXPIRING,
    TIER_UP,
    WIN_BACK,
)
from services.engagement.config import EngagementSettings
from services.engagement.notices import publish_suppressed
from services.engagement.service import OutreachPlan, schedule_outreach, utc
from shared.events import Event
from shared.events.commerce import PurchaseCompleted
from shared.events.engagement import ChurnRiskChanged
from shared.events.loyalty import PointsExpiring, RewardUnlocked, TierChanged

__all__ = ["JOURNEYS", "MARKETING"]
EXIT_PURCHASED = "exit: the customer purchased before it was due"


async def plan(
    session: AsyncSession,
    event: Event,
    *,
    journey: str,
    key: str,
    context: dict[str, Any],
    now: datetime,
    settings: EngagementSettings,
    to_address: str | None = None,
) -> bool:
    """Plan one step of ``journey`` for the event's customer under its current settings.

    False if the journey is switched off or this step (``key``) was planned before.
    """
    config = await prefetch.journey(session, event, journey, settings)
    if not config.enabled:
        return False
    step = OutreachPlan(
        customer_id=event.subject,
        journey=journey,
        template=config.template,
        dedupe_key=dedupe_key(journey, key),
        due_at=event.time + config.delay,
        trigger_event_id=event.id,
        channel=config.channels[0],
        context=context,
        trigger_at=event.time,
        to_address=to_address,
    )
    return await schedule_outreach(session, step, now=now)


def dedupe_key(journey: str, key: str) -> str:
    """The step of ``journey`` planned for ``key``: planned once, and exited by it."""
    return f"{journey}:{key}"


async def plan_tier_up(
    session: AsyncSession, event: TierChanged, *, now: datetime, settings: EngagementSettings
) -> bool:
    data = event.data
    if data.direction != "up":
        return False
    context = {"new_tier": data.new_tier, "benefits": list(data.benefits)}
    key = f"{event.subject}:{data.new_tier}:{event.id}"
    return await plan(
        session, event, journey=TIER_UP, key=key, context=context, now=now, settings=settings
    )


async def plan_milestone_gift(
    session: AsyncSession, event: RewardUnlocked, *, now: datetime, settings: EngagementSettings
) -> bool:
    context = {"reward_name": event.data.reward_name, "reason": event.data.reason}
    key = f"{event.subject}:{event.data.reward_id}:{event.id}"
    return await plan(
        session, event, journey=MILESTONE_GIFT, key=key, context=context, now=now, settings=settings
    )


async def plan_points_expiring(
    session: AsyncSession, event: PointsExpiring, *, now: datetime, settings: EngagementSettings
) -> bool:
    data = event.data
    expires = utc(data.expires_at)
    context = {
        "points": data.points,
        "balance": data.balance,
        "expires_on": expires.date().isoformat(),
    }
    key = f"{event.subject}:{expires.isoformat()}"
    return await plan(
        session,
        event,
        journey=POINTS_EXPIRING,
        key=key,
        context=context,
        now=now,
        settings=settings,
    )


async def plan_win_back(
    session: AsyncSession, event: ChurnRiskChanged, *, now: datetime, settings: EngagementSettings
) -> bool:
    if event.data.band != "high" or event.data.previous_band == "high":
        return False
    context = {"risk": round(event.data.risk, 2)}
    return await plan(
        session, event, journey=WIN_BACK, key=event.id, context=context, now=now, settings=settings
    )


async def exit_pending(
    session: AsyncSession,
    *,
    customer_id: str,
    journeys: tuple[str, ...],
    reason: str,
    now: datetime,
) -> int:
    """Cancel a customer's pending steps of ``journeys``: their reason is gone."""
    exited: list[str] = []
    for journey in journeys:
        exited += await repository.suppress_pending(
            session, customer_id=customer_id, journey=journey, reason=reason
        )
    for outreach_id in exited:
        await publish_suppressed(session, outreach_id, now=now)
    return len(exited)


async def exit_win_back(session: AsyncSession, event: PurchaseCompleted, *, now: datetime) -> int:
    """A purchase ends the customer's pending win-back."""
    run = prefetch.run_of(session, event)
    if run is not None and event.subject not in run.win_back:
        return 0  # none pending when the run began, and only a ChurnRiskChanged plans one
    exited = await exit_pending(
        session, customer_id=event.subject, journeys=(WIN_BACK,), reason=EXIT_PURCHASED, now=now
    )
    if run is not None:
        run.win_back.discard(event.subject)
    return exited


async def exit_keys(
    session: AsyncSession, *, keys: tuple[str, ...], reason: str, now: datetime
) -> int:
    """Cancel the pending steps with these dedupe keys."""
    exited = await repository.suppress_pending_keys(session, keys=keys, reason=reason)
    for outreach_id in exited:
        await publish_suppressed(session, outreach_id, now=now)
    return len(exited)
