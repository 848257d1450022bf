"""Event handlers of the churn/CLV part; merged into engagement's handler map."""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn import ahead, schedule, service
from services.engagement.churn.settings import ChurnSettings, churn_settings
from shared.config import ServiceSettings
from shared.consumer import Handlers
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted, PurchaseRefunded
from shared.events.feedback import (
    FEEDBACK_TOPIC,
    ComplaintOpened,
    ComplaintResolved,
    ResponseRecorded,
)
from shared.events.profile import (
    PROFILE_TOPIC,
    CustomerErased,
    CustomerMerged,
    CustomerUnmerged,
)
from shared.timers import Clock, wall_clock

INPUT_TOPICS: tuple[str, ...] = (PURCHASES_TOPIC, PROFILE_TOPIC, FEEDBACK_TOPIC)


async def on_purchase_completed(
    session: AsyncSession,
    event: PurchaseCompleted,
    *,
    config: ChurnSettings,
    clock: Clock,
    bootstrap: schedule.Bootstrap,
) -> None:
    now = clock()
    if not await ahead.record_purchase(session, event, config=config, now=now):
        await service.record_purchase(
            session,
            customer_id=event.subject,
            purchase_id=event.data.purchase_id,
            occurred_at=event.time,
            amount=event.data.total.amount,
            currency=event.data.total.currency,
            config=config,
            now=now,
            origin_id=service.origin_of(session, event),
        )
    await bootstrap(session, config=config, now=now)


async def on_purchase_refunded(
    session: AsyncSession, event: PurchaseRefunded, *, config: ChurnSettings, clock: Clock
) -> None:
    await service.record_refund(
        session,
        customer_id=event.subject,
        refund_id=event.data.refund_id,
        purchase_id=event.data.purchase_id,
        amount=event.data.amount.amount,
        config=config,
        now=clock(),
        origin_id=service.origin_of(session, event),
    )


async def on_response_recorded(
    session: AsyncSession, event: ResponseRecorded, *, config: ChurnSettings, clock: Clock
) -> None:
    if event.data.kind != "nps":
        return
    await service.record_nps(
        session,
        customer_id=event.subject,
        at=event.time,
        score=event.data.score,
        detractor=_is_detractor(event),
        config=config,
        now=clock(),
    )


def _is_detractor(event: ResponseRecorded) -> bool:
    if event.data.category is not None:
        return event.data.category == "detractor"
    return event.data.score is not None and event.data.score <= 6


async def on_complaint(
    session: AsyncSession,
    event: ComplaintOpened | ComplaintResolved,
    *,
    config: ChurnSettings,
    clock: Clock,
) -> None:
    await service.record_complaint(
        session,
        customer_id=event.subject,
        case_id=event.data.case_id,
        resolved=isinstance(event, ComplaintResolved),
        config=config,
        now=clock(),
        origin_id=service.origin_of(session, event),
    )


async def on_customer_merged(
    session: AsyncSession, event: CustomerMerged, *, config: ChurnSettings, clock: Clock
) -> None:
    await service.merge(
        session, survivor=event.subject, merged=event.data.merged_id, config=config, now=clock()
    )


async def on_customer_unmerged(
    session: AsyncSession, event: CustomerUnmerged, *, config: ChurnSettings, clock: Clock
) -> None:
    await service.unmerge(
        session,
        survivor=event.subject,
        restored=event.data.restored_id,
        config=config,
        now=clock(),
    )


async def on_customer_erased(session: AsyncSession, event: CustomerErased) -> None:
    await service.erase(session, customer_id=event.subject)


def handlers(
    settings: ServiceSettings, config: ChurnSettings | None = None, clock: Clock = wall_clock
) -> Handlers:
    cfg = config or churn_settings(settings)
    return {
        PurchaseCompleted: partial(
            on_purchase_completed, config=cfg, clock=clock, bootstrap=schedule.Bootstrap()
        ),
        PurchaseRefunded: partial(on_purchase_refunded, config=cfg, clock=clock),
        ResponseRecorded: partial(on_response_recorded, config=cfg, clock=clock),
        ComplaintOpened: partial(on_complaint, config=cfg, clock=clock),
        ComplaintResolved: partial(on_complaint, config=cfg, clock=clock),
        CustomerMerged: partial(on_customer_merged, config=cfg, clock=clock),
        CustomerUnmerged: partial(on_customer_unmerged, config=cfg, clock=clock),
        CustomerErased: on_customer_erased,
    }
