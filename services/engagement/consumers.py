"""Thin event handlers: one per event type, mapped in ``handlers``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import service
from services.engagement.config import EngagementSettings
from shared.config import ServiceSettings
from shared.consumer import Handlers
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted
from shared.events.profile import PROFILE_TOPIC, CustomerRegistered, CustomerUpdated

INPUT_TOPICS = (PURCHASES_TOPIC, PROFILE_TOPIC)


async def on_purchase_completed(
    session: AsyncSession, event: PurchaseCompleted, *, settings: EngagementSettings
) -> None:
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


def handlers(settings: ServiceSettings) -> Handlers:
    assert isinstance(settings, EngagementSettings)
    return {
        PurchaseCompleted: partial(on_purchase_completed, settings=settings),
        CustomerRegistered: on_customer_details,
        CustomerUpdated: on_customer_details,
    }
