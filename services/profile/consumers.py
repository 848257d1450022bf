"""Thin event handlers: one per event type, mapped in ``handlers``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import service
from services.profile.config import ProfileSettings
from services.profile.models import Customer
from services.profile.service import segments
from shared import outbox
from shared.config import ServiceSettings
from shared.consumer import Handler, Handlers
from shared.events import Event
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted, PurchaseRefunded
from shared.events.engagement import ENGAGEMENT_TOPIC, ChurnRiskChanged, OutreachSent
from shared.events.feedback import (
    FEEDBACK_TOPIC,
    ComplaintOpened,
    ComplaintResolved,
    ResponseRecorded,
)
from shared.events.interactions import INTERACTIONS_TOPIC, InteractionRecorded
from shared.events.loyalty import (
    LOYALTY_TOPIC,
    PointsEarned,
    PointsExpired,
    PointsRedeemed,
    PointsReleased,
    PointsReversed,
    RedemptionCancelled,
    TierChanged,
)

INPUT_TOPICS = (
    PURCHASES_TOPIC,
    INTERACTIONS_TOPIC,
    LOYALTY_TOPIC,
    ENGAGEMENT_TOPIC,
    FEEDBACK_TOPIC,
)

Recorder = Callable[..., Awaitable[Customer]]


def _handler(record: Recorder, **options: Any) -> Handler:
    """A recorder, then the segments; the batch's outbox rows are written once at commit
    (``outbox.defer``; the read-ahead and the other held writes: ``service.batching``)."""

    async def handle(session: AsyncSession, event: Event) -> None:
        outbox.defer(session)
        customer = await record(session, event=event, **options)
        await segments.reevaluate(session, customer)

    handle.__name__ = f"on_{record.__name__}"
    return handle


def handlers(settings: ServiceSettings) -> Handlers:
    assert isinstance(settings, ProfileSettings)
    region = settings.default_phone_region
    return {
        PurchaseCompleted: _handler(service.record_purchase, region=region),
        PurchaseRefunded: _handler(service.record_refund),
        InteractionRecorded: _handler(service.record_interaction),
        PointsEarned: _handler(service.record_points),
        PointsReleased: _handler(service.record_points),
        PointsRedeemed: _handler(service.record_points),
        PointsReversed: _handler(service.record_points),
        PointsExpired: _handler(service.record_points),
        RedemptionCancelled: _handler(service.record_points),
        TierChanged: _handler(service.record_tier),
        OutreachSent: _handler(service.record_outreach),
        ChurnRiskChanged: _handler(service.record_churn),
        ResponseRecorded: _handler(service.record_response),
        ComplaintOpened: _handler(service.record_complaint),
        ComplaintResolved: _handler(service.record_complaint),
    }
