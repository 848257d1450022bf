"""Thin event and timer handlers, mapped in ``handlers`` and ``timer_handlers``."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.config import LoyaltySettings
from services.loyalty.service import (
    birthdays,
    codes,
    earning,
    expiry,
    held,
    members,
    pending,
    prefetch,
    refunds,
    schedule,
    tiers,
)
from shared import outbox, timers
from shared.config import ServiceSettings
from shared.consumer import Handlers
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted, PurchaseRefunded
from shared.events.interactions import INTERACTIONS_TOPIC, InteractionRecorded
from shared.events.profile import (
    PROFILE_TOPIC,
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerUnmerged,
    CustomerUpdated,
)
from shared.timers import Clock, Timer, TimerHandler, wall_clock

INPUT_TOPICS = (PURCHASES_TOPIC, INTERACTIONS_TOPIC, PROFILE_TOPIC)


def _batched(session: AsyncSession) -> None:
    """Purchases leave their rows pending: the batch writes them in a few statements.

    Autoflush stays off for the rest of the runner's transaction (its own inserts do
    not need our rows); ``earning.award_purchase`` is written to read nothing pending.
    Outbox rows and new timers wait for the commit too (one insert each for the
    batch; ``shared.timers`` writes held timers first whenever it is asked anything
    else). A run of purchases reads its state ahead (``prefetch``).
    """
    _defer_writes(session)
    session.sync_session.autoflush = False


def _defer_writes(session: AsyncSession) -> None:
    outbox.defer(session)
    timers.defer(session)


async def _unbatched(session: AsyncSession) -> None:
    """Every other handler sees everything written so far, as usual.

    It may change what the purchases' read-ahead answered, so that is dropped.
    """
    _defer_writes(session)
    prefetch.forget(session)
    birthdays.forget(session)
    session.sync_session.autoflush = True
    await held.flush(session)


async def on_purchase_completed(
    session: AsyncSession, event: PurchaseCompleted, *, settings: LoyaltySettings
) -> None:
    if session.sync_session.new:
        # Rows another handler added go first, so ids keep the order of the events (the
        # purchase's rows are held, ``held``, and written before the session's at commit).
        await session.flush()
    _batched(session)
    await earning.award_purchase(session, event=event, settings=settings)


async def on_purchase_refunded(session: AsyncSession, event: PurchaseRefunded) -> None:
    await _unbatched(session)
    await refunds.record_refund(session, event=event)


async def on_interaction_recorded(
    session: AsyncSession, event: InteractionRecorded, *, settings: LoyaltySettings
) -> None:
    await _unbatched(session)
    await earning.award_interaction(session, event=event, settings=settings)


async def on_customer_merged(
    session: AsyncSession, event: CustomerMerged, *, settings: LoyaltySettings
) -> None:
    await _unbatched(session)
    await members.merge(session, event=event, settings=settings)


async def on_customer_unmerged(
    session: AsyncSession, event: CustomerUnmerged, *, settings: LoyaltySettings
) -> None:
    await _unbatched(session)
    await members.unmerge(session, event=event, settings=settings)


async def on_customer_erased(session: AsyncSession, event: CustomerErased) -> None:
    await _unbatched(session)
    await members.erase(session, event=event)


async def on_customer_details(
    session: AsyncSession, event: CustomerRegistered | CustomerUpdated
) -> None:
    """Reads and changes locked members only (birthdays and their timers), so what the
    batch holds stays held and changed members are written with the rest at commit. A
    run of them reads its members once (``birthdays.record``)."""
    _batched(session)
    prefetch.forget(session)
    await birthdays.record(session, event=event)


def handlers(settings: ServiceSettings) -> Handlers:
    assert isinstance(settings, LoyaltySettings)
    return {
        PurchaseCompleted: partial(on_purchase_completed, settings=settings),
        PurchaseRefunded: on_purchase_refunded,
        InteractionRecorded: partial(on_interaction_recorded, settings=settings),
        CustomerMerged: partial(on_customer_merged, settings=settings),
        CustomerUnmerged: partial(on_customer_unmerged, settings=settings),
        CustomerErased: on_customer_erased,
        CustomerRegistered: on_customer_details,
        CustomerUpdated: on_customer_details,
    }


async def on_expiry_due(session: AsyncSession, timer: Timer) -> None:
    await expiry.expire_due(session, timer)


def timer_handlers(
    settings: ServiceSettings, clock: Clock = wall_clock
) -> Mapping[str, TimerHandler]:
    """``clock`` is the scheduler's: the birthday timer awards the year it fires in."""
    assert isinstance(settings, LoyaltySettings)
    return {
        schedule.EXPIRE: on_expiry_due,
        schedule.NOTICE: partial(expiry.warn_expiring, settings=settings),
        schedule.TIER_REVIEW: partial(tiers.review, settings=settings),
        schedule.RELEASE: pending.release_due,
        schedule.CODE_EXPIRY: partial(codes.expire_code, settings=settings),
        schedule.BIRTHDAY: partial(birthdays.award_due, settings=settings, clock=clock),
    }
