"""Thin event handlers: one per event type, mapped in ``handlers``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import service
from services.profile.config import ProfileSettings
from shared.config import ServiceSettings
from shared.consumer import Handlers
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted, PurchaseRefunded
from shared.events.engagement import ENGAGEMENT_TOPIC, OutreachSent
from shared.events.interactions import INTERACTIONS_TOPIC, InteractionRecorded
from shared.events.loyalty import LOYALTY_TOPIC, PointsEarned

INPUT_TOPICS = (PURCHASES_TOPIC, INTERACTIONS_TOPIC, LOYALTY_TOPIC, ENGAGEMENT_TOPIC)


async def on_purchase_completed(session: AsyncSession, event: PurchaseCompleted) -> None:
    await service.record_purchase(session, event=event)


async def on_purchase_refunded(session: AsyncSession, event: PurchaseRefunded) -> None:
    await service.record_refund(session, event=event)


async def on_interaction_recorded(session: AsyncSession, event: InteractionRecorded) -> None:
    await service.record_interaction(session, event=event)


async def on_points_earned(session: AsyncSession, event: PointsEarned) -> None:
    await service.record_points(session, event=event)


async def on_outreach_sent(session: AsyncSession, event: OutreachSent) -> None:
    await service.record_outreach(session, event=event)


def handlers(settings: ServiceSettings) -> Handlers:
    assert isinstance(settings, ProfileSettings)
    return {
        PurchaseCompleted: on_purchase_completed,
        PurchaseRefunded: on_purchase_refunded,
        InteractionRecorded: on_interaction_recorded,
        PointsEarned: on_points_earned,
        OutreachSent: on_outreach_sent,
    }
