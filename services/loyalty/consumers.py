"""Thin event handlers: one per event type, mapped in ``handlers``."""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import service
from services.loyalty.config import LoyaltySettings
from shared.config import ServiceSettings
from shared.consumer import Handlers
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted
from shared.events.interactions import INTERACTIONS_TOPIC
from shared.events.profile import PROFILE_TOPIC

INPUT_TOPICS = (PURCHASES_TOPIC, INTERACTIONS_TOPIC, PROFILE_TOPIC)


async def on_purchase_completed(
    session: AsyncSession, event: PurchaseCompleted, *, settings: LoyaltySettings
) -> None:
    rate = settings.points_per_unit_by_currency.get(
        event.data.total.currency, settings.points_per_unit
    )
    await service.award_purchase_points(session, event=event, rate=rate)


def handlers(settings: ServiceSettings) -> Handlers:
    assert isinstance(settings, LoyaltySettings)
    return {PurchaseCompleted: partial(on_purchase_completed, settings=settings)}
