"""Thin event and timer handlers, and the maps the runner and scheduler use."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from services.feedback.config import FeedbackSettings
from services.feedback.service import (
    batching,
    complaints,
    invitations,
    periodic,
    privacy,
    responses,
    support,
)
from shared import outbox
from shared.config import ServiceSettings
from shared.consumer import Handler, Handlers
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted
from shared.events.interactions import (
    INTERACTIONS_TOPIC,
    FeedbackSubmitted,
    InteractionRecorded,
)
from shared.events.profile import (
    PROFILE_TOPIC,
    CustomerErased,
    CustomerMerged,
    CustomerUnmerged,
    SegmentEntered,
    SegmentExited,
)
from shared.timers import Timer, TimerHandler

INPUT_TOPICS = (PURCHASES_TOPIC, INTERACTIONS_TOPIC, PROFILE_TOPIC)


async def on_purchase_completed(
    session: AsyncSession, event: PurchaseCompleted, *, settings: FeedbackSettings
) -> None:
    """A run of purchases reads ahead and holds its invitations (``batching``)."""
    outbox.defer(session)
    await invitations.invite_after_purchase(session, event=event, settings=settings)


async def on_feedback_submitted(
    session: AsyncSession, event: FeedbackSubmitted, *, settings: FeedbackSettings
) -> None:
    await responses.record_submitted(session, event=event, settings=settings)


async def on_interaction_recorded(
    session: AsyncSession, event: InteractionRecorded, *, settings: FeedbackSettings
) -> None:
    await support.open_from_interaction(session, event=event, settings=settings)


async def on_customer_merged(session: AsyncSession, event: CustomerMerged) -> None:
    await privacy.merge_customer(session, event=event)


async def on_customer_unmerged(session: AsyncSession, event: CustomerUnmerged) -> None:
    await privacy.unmerge_customer(session, event=event)


async def on_customer_erased(session: AsyncSession, event: CustomerErased) -> None:
    await privacy.erase_customer(session, event=event)


async def on_segment_entered(session: AsyncSession, event: SegmentEntered) -> None:
    await periodic.enter_segment(session, event=event)


async def on_segment_exited(session: AsyncSession, event: SegmentExited) -> None:
    await periodic.exit_segment(session, event=event)


async def on_periodic_due(
    session: AsyncSession, timer: Timer, *, settings: FeedbackSettings
) -> None:
    await periodic.on_due(session, timer, settings=settings)


async def on_follow_up_due(
    session: AsyncSession, timer: Timer, *, settings: FeedbackSettings
) -> None:
    await complaints.on_follow_up_due(session, timer, settings=settings)


def _feedback(settings: ServiceSettings) -> FeedbackSettings:
    if not isinstance(settings, FeedbackSettings):
        raise TypeError("the feedback service needs FeedbackSettings")
    return settings


def _after_held(handler: Handler) -> Handler:
    """Another kind of event may read or change invitations: the purchases' held ones
    are written first and their read-ahead dropped (``batching.write``). Outbox rows
    of the whole batch wait for the commit (``outbox.defer``)."""

    async def handle(session: AsyncSession, event: Any) -> None:
        outbox.defer(session)
        await batching.write(session)
        await handler(session, event)

    return handle


def handlers(settings: ServiceSettings) -> Handlers:
    """Profile's ``customer.registered`` / ``customer.updated`` have no handler: the
    runner counts them as ignored, and a batch of only those opens no transaction."""
    config = _feedback(settings)
    found: dict[type, Handler] = {
        PurchaseCompleted: partial(on_purchase_completed, settings=config),
        FeedbackSubmitted: _after_held(
            repository.MERGES.for_survivor(partial(on_feedback_submitted, settings=config))
        ),
        InteractionRecorded: _after_held(partial(on_interaction_recorded, settings=config)),
        CustomerMerged: _after_held(on_customer_merged),
        CustomerUnmerged: _after_held(on_customer_unmerged),
        CustomerErased: _after_held(on_customer_erased),
        SegmentEntered: _after_held(on_segment_entered),
        SegmentExited: _after_held(on_segment_exited),
    }
    return found


def timer_handlers(settings: ServiceSettings) -> Mapping[str, TimerHandler]:
    config = _feedback(settings)
    return {
        complaints.SLA_TIMER: complaints.on_sla_due,
        complaints.FOLLOW_UP_TIMER: partial(on_follow_up_due, settings=config),
        periodic.PERIODIC_TIMER: partial(on_periodic_due, settings=config),
    }
