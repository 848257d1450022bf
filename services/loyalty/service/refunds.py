"""Refunds take back points in proportion to what was refunded, once.

A refund is stored as received. If its purchase is already known it is applied
at once; otherwise it waits, and the purchase applies it when it lands, so the
order the two events arrive in does not change the outcome.

Arithmetic: each refund adds its exact share of the purchase's points (per line
when the refund lists lines, else amount / total); the points taken back so far
are that running exact sum rounded half-up, capped at the points the purchase
earned. Partial refunds that add up to the whole purchase take back exactly it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.models import Lot, Member, Purchase, Refund
from services.loyalty.service import ledger
from services.loyalty.service.common import SOURCE, utc
from services.loyalty.service.ledger import Why
from shared import outbox
from shared.events import derived_id
from shared.events.commerce import PurchaseRefunded
from shared.events.loyalty import PointsReversed, PointsReversedData


async def record_refund(session: AsyncSession, *, event: PurchaseRefunded) -> int:
    data = event.data
    member = await repository.lock_member(session, event.subject)
    if await session.get(Refund, data.refund_id) is not None:
        return 0  # the same refund again under another event id
    purchase = await session.get(Purchase, data.purchase_id)
    if purchase is not None and purchase.customer_id != member.customer_id:
        member = await repository.lock_member(session, purchase.customer_id)
    refund = Refund(
        refund_id=data.refund_id,
        purchase_id=data.purchase_id,
        customer_id=member.customer_id,
        amount=data.amount.amount,
        lines=[line.model_dump() for line in data.lines],
        source_event_id=event.id,
        occurred_at=utc(event.time),
        applied=False,
        points_reversed=0,
    )
    session.add(refund)
    if purchase is None:
        await session.flush()  # visible to a purchase later in this batch
        return 0  # applied when the purchase arrives
    return await apply(session, member, purchase, refund)


async def apply(session: AsyncSession, member: Member, purchase: Purchase, refund: Refund) -> int:
    purchase.refunded_exact = Decimal(purchase.refunded_exact) + _exact_share(purchase, refund)
    rounded = int(purchase.refunded_exact.to_integral_value(rounding=ROUND_HALF_UP))
    target = min(purchase.points, rounded)
    points = target - purchase.reversed_points
    refund.applied = True
    if points <= 0:
        return 0
    refund.points_reversed = points
    purchase.reversed_points = target
    why = Why(
        reason=f"refund {refund.refund_id} of purchase {purchase.purchase_id}: {refund.amount}",
        key=f"reverse:{refund.refund_id}",
        source_event_id=refund.source_event_id,
        purchase_id=purchase.purchase_id,
        rule_id="refund",
        reference=refund.refund_id,
    )
    ledger.post(session, member, kind="reverse", points=-points, why=why, at=refund.occurred_at)
    await ledger.take(session, member, points, first=await _lot_of(session, purchase))
    await _publish(session, member, purchase, refund, points)
    return points


def _exact_share(purchase: Purchase, refund: Refund) -> Decimal:
    per_unit = {sku: Decimal(v) for sku, v in (purchase.unit_points or {}).items()}
    lines = refund.lines or []
    if lines and per_unit and all(line["sku"] in per_unit for line in lines):
        return sum((per_unit[line["sku"]] * int(line["quantity"]) for line in lines), Decimal(0))
    total = Decimal(purchase.total)
    if total <= 0:
        return Decimal(purchase.points)
    return Decimal(purchase.points) * Decimal(refund.amount) / total


async def _lot_of(session: AsyncSession, purchase: Purchase) -> Lot | None:
    stmt = select(Lot).where(
        Lot.purchase_id == purchase.purchase_id, Lot.customer_id == purchase.customer_id
    )
    return (await session.execute(stmt)).scalars().first()


async def _publish(
    session: AsyncSession, member: Member, purchase: Purchase, refund: Refund, points: int
) -> None:
    await outbox.enqueue(
        session,
        PointsReversed.create(
            id=derived_id("points.reversed", refund.refund_id),
            subject=member.customer_id,
            source=SOURCE,
            time=utc(refund.occurred_at),
            data=PointsReversedData(
                points=points,
                balance=member.spendable,
                reason=f"refund of purchase {purchase.purchase_id}",
                source_event_id=refund.source_event_id,
                purchase_id=purchase.purchase_id,
                refund_id=refund.refund_id,
            ),
        ),
    )
