"""Thin event handlers: one per event type, mapped in ``handlers``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import service
from shared.config import ServiceSettings
from shared.consumer import Handlers
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted
from shared.events.interactions import INTERACTIONS_TOPIC
from shared.events.profile import PROFILE_TOPIC

INPUT_TOPICS = (PURCHASES_TOPIC, INTERACTIONS_TOPIC, PROFILE_TOPIC)


async def on_purchase_completed(session: AsyncSession, event: PurchaseCompleted) -> None:
    await service.note_purchase(session, event=event)


def handlers(_settings: ServiceSettings) -> Handlers:
    return {PurchaseCompleted: on_purchase_completed}
