"""Thin event handlers: one per event type, mapped in ``handlers``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import journeys, service
from services.engagement.churn import consumers as churn_consumers
from services.engagement.config import EngagementSettings
from shared.config import ServiceSettings
from shared.consumer import Handler, Handlers
from shared.events import Event
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted
from shared.events.engagement import ENGAGEMENT_TOPIC, ChurnRiskChanged
from shared.events.loyalty import LOYALTY_TOPIC, PointsExpiring, RewardUnlocked, TierChanged
from shared.events.profile import (
    PROFILE_TOPIC,
    ConsentChanged,
    CustomerRegistered,
    CustomerUpdated,
)

OWN_TOPICS = (PURCHASES_TOPIC, PROFILE_TOPIC, LOYALTY_TOPIC, ENGAGEMENT_TOPIC)
INPUT_TOPICS = tuple(dict.fromkeys((*OWN_TOPICS, *churn_consumers.INPUT_TOPICS)))


async def on_purchase_completed(
    session: AsyncSession, event: PurchaseCompleted, *, settings: EngagementSettings
) -> None:
    await journeys.exit_win_back(session, event, now=datetime.now(UTC))
    if settings.thank_you_enabled:
        await service.plan_thank_you(
            session,
            event=event,
            now=datetime.now(UTC),
            max_age=timedelta(seconds=settings.thank_you_max_age_seconds),
        )


async def on_customer_details(
    session: AsyncSession, event: CustomerRegistered | CustomerUpdated
) -> None:
    await service.record_contact(session, event=event)


async def on_tier_changed(session: AsyncSession, event: TierChanged) -> None:
    await journeys.plan_tier_up(session, event, now=datetime.now(UTC))


async def on_reward_unlocked(session: AsyncSession, event: RewardUnlocked) -> None:
    await journeys.plan_milestone_gift(session, event, now=datetime.now(UTC))


async def on_points_expiring(session: AsyncSession, event: PointsExpiring) -> None:
    await journeys.plan_points_expiring(session, event, now=datetime.now(UTC))


async def on_churn_risk_changed(
    session: AsyncSession, event: ChurnRiskChanged, *, settings: EngagementSettings
) -> None:
    delay = timedelta(seconds=settings.win_back_delay_seconds)
    await journeys.plan_win_back(session, event, now=datetime.now(UTC), delay=delay)


async def on_consent_changed(session: AsyncSession, event: ConsentChanged) -> None:
    await service.record_consent_change(session, event=event)


def handlers(settings: ServiceSettings) -> Handlers:
    """Outreach's handlers and the churn part's, both run for an event both want."""
    return combine(outreach_handlers(settings), churn_consumers.handlers(settings))


def combine(*maps: Handlers) -> Handlers:
    merged: dict[type[Event], list[Handler]] = {}
    for handler_map in maps:
        for event_type, handler in handler_map.items():
            merged.setdefault(event_type, []).append(handler)
    return {t: hs[0] if len(hs) == 1 else partial(_run_all, hs) for t, hs in merged.items()}


async def _run_all(handlers: list[Handler], session: AsyncSession, event: Event) -> None:
    for handler in handlers:
        await handler(session, event)


def outreach_handlers(settings: ServiceSettings) -> Handlers:
    assert isinstance(settings, EngagementSettings)
    return {
        PurchaseCompleted: partial(on_purchase_completed, settings=settings),
        CustomerRegistered: on_customer_details,
        CustomerUpdated: on_customer_details,
        ConsentChanged: on_consent_changed,
        TierChanged: on_tier_changed,
        RewardUnlocked: on_reward_unlocked,
        PointsExpiring: on_points_expiring,
        ChurnRiskChanged: partial(on_churn_risk_changed, settings=settings),
    }
