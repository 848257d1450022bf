"""The 360° view, from other services' events; each also joins the timeline.

Every update is order-independent: "latest" fields keep the max event time,
"earliest" the min, counters and sums are commutative, and the net spend is
computed when read. A purchase or refund counts once per sale, however often a
till sends it and under whichever event id (``batching.count_once``). Each handler
returns the customer it changed, so the caller can re-evaluate segments.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository
from services.profile.models import Customer
from services.profile.service import batching, identities
from services.profile.service.customers import customer_for, earliest, is_current, latest
from shared.events import Event, Money
from shared.events.commerce import PurchaseCompleted, PurchaseRefunded
from shared.events.engagement import ChurnRiskChanged, OutreachSent
from shared.events.feedback import ComplaintOpened, ComplaintResolved, ResponseRecorded
from shared.events.interactions import InteractionRecorded
from shared.events.loyalty import (
    PointsEarned,
    PointsExpired,
    PointsRedeemed,
    PointsReleased,
    PointsReversed,
    RedemptionCancelled,
    TierChanged,
)

log = logging.getLogger(__name__)

BalanceEvent = (
    PointsEarned
    | PointsReleased
    | PointsRedeemed
    | PointsReversed
    | PointsExpired
    | RedemptionCancelled
)


async def record_purchase(
    session: AsyncSession, *, event: PurchaseCompleted, region: str = "VN"
) -> Customer:
    data = event.data
    customer = await customer_for(session, event, data.customer)
    if not await batching.count_once(session, event):
        return customer  # the same sale, re-sent: counted, and on the timeline, already
    customer.order_count += 1
    if in_spend_currency(customer, data.total):
        customer.gross_spend += data.total.amount
    customer.first_purchase_at = earliest(customer.first_purchase_at, event.time)
    customer.last_purchase_at = latest(customer.last_purchase_at, event.time)
    await batching.touch_channel(session, customer.customer_id, data.channel, event.time)
    await identities.claim_hint(session, customer, data.customer, at=event.time, region=region)
    money = {"amount": str(data.total.amount), "currency": data.total.currency}
    await _timeline(session, customer, event, channel=data.channel, ref=data.purchase_id, **money)
    return customer


async def record_refund(session: AsyncSession, *, event: PurchaseRefunded) -> Customer:
    """Refunds are summed apart from purchases, so a refund seen first still converges."""
    data = event.data
    customer = await customer_for(session, event)
    if not await batching.count_once(session, event):
        return customer
    if in_spend_currency(customer, data.amount):
        customer.refunded_spend += data.amount.amount
    money = {"amount": str(data.amount.amount), "currency": data.amount.currency}
    await _timeline(session, customer, event, ref=data.purchase_id, **money)
    return customer


async def record_interaction(session: AsyncSession, *, event: InteractionRecorded) -> Customer:
    data = event.data
    customer = await customer_for(session, event)
    await batching.touch_channel(session, customer.customer_id, data.channel, event.time)
    await _entry(
        session,
        customer=customer,
        event=event,
        kind=data.kind,
        channel=data.channel,
        summary=data.summary,
        details=dict(data.attributes),
    )
    return customer


async def record_points(session: AsyncSession, *, event: BalanceEvent) -> Customer:
    """The last balance loyalty published wins.

    Loyalty's events for one customer arrive in ledger order (one partition, one
    outbox), but carry the purchase's own time, which can be older than an earlier
    entry's: comparing times would drop a late till upload's newer balance.
    A balance published for an id absorbed by a merge is not the survivor's (it
    races loyalty's combined balance on another partition): only the timeline
    keeps it.
    """
    customer = await customer_for(session, event)
    if event.subject == customer.customer_id:
        customer.points_balance = event.data.balance
        customer.points_updated_at = latest(customer.points_updated_at, event.time)
    data = event.data
    await _timeline(session, customer, event, points=data.points, balance=data.balance)
    return customer


async def record_tier(session: AsyncSession, *, event: TierChanged) -> Customer:
    customer = await customer_for(session, event)
    if is_current(customer.tier_updated_at, event.time):
        customer.tier, customer.tier_updated_at = event.data.new_tier, event.time
    await _timeline(session, customer, event, tier=event.data.new_tier)
    return customer


async def record_churn(session: AsyncSession, *, event: ChurnRiskChanged) -> Customer:
    customer = await customer_for(session, event)
    data = event.data
    if is_current(customer.churn_updated_at, event.time):
        customer.churn_risk, customer.churn_band = data.risk, data.band
        customer.clv, customer.clv_currency = data.clv, data.currency
        customer.churn_updated_at = event.time
    clv = None if data.clv is None else str(data.clv)
    await _timeline(
        session,
        customer,
        event,
        band=data.band,
        risk=data.risk,
        clv=clv,
        clv_currency=data.currency,
    )
    return customer


async def record_outreach(session: AsyncSession, *, event: OutreachSent) -> Customer:
    customer = await customer_for(session, event)
    if is_current(customer.last_outreach_at, event.time):
        customer.last_outreach_at = event.time
        customer.last_outreach_journey = event.data.journey
    await _timeline(
        session,
        customer,
        event,
        channel=event.data.channel,
        ref=event.data.outreach_id,
        journey=event.data.journey,
    )
    return customer


async def record_response(session: AsyncSession, *, event: ResponseRecorded) -> Customer:
    customer = await customer_for(session, event)
    data = event.data
    if (
        data.kind == "nps"
        and data.score is not None
        and is_current(customer.last_nps_at, event.time)
    ):
        customer.last_nps, customer.last_nps_at = data.score, event.time
    await _timeline(session, customer, event, survey_kind=data.kind, score=data.score)
    return customer


async def record_complaint(
    session: AsyncSession, *, event: ComplaintOpened | ComplaintResolved
) -> Customer:
    """Open complaints = cases opened minus cases resolved, counted from the timeline
    (so a resolution seen before its opening, or a replay, still converges)."""
    customer = await customer_for(session, event)
    await _timeline(session, customer, event, ref=event.data.case_id)
    await batching.write_timeline(session)  # the count reads the timeline
    customer.open_complaints = await repository.count_open_complaints(session, customer.customer_id)
    return customer


async def _timeline(
    session: AsyncSession,
    customer: Customer,
    event: Event,
    *,
    channel: str | None = None,
    ref: str | None = None,
    **details: object,
) -> None:
    await _entry(
        session,
        customer=customer,
        event=event,
        kind=event.type,
        channel=channel,
        ref=ref,
        details=details,
    )


async def _entry(session: AsyncSession, **entry: Any) -> None:
    """Add the event's timeline entry (held until the batch commits, in a batch)."""
    row = repository.timeline_row(**entry)
    if row is not None:
        await batching.add_timeline(session, row)


def in_spend_currency(customer: Customer, money: Money) -> bool:
    """Spend is kept in the first currency seen; other currencies are counted, not summed.

    Multi-currency spend (per-currency sums or conversion) is future work.
    """
    if customer.spend_currency is None:
        customer.spend_currency = money.currency
    if money.currency == customer.spend_currency:
        return True
    log.info(
        "amount not added to lifetime spend: currency differs",
        extra={"currency": money.currency, "spend_currency": customer.spend_currency},
    )
    return False
