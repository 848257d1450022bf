"""Loyalty domain logic. Takes the caller's session; flushes, never commits."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.models import LedgerEntry, Member
from shared import outbox
from shared.events import derived_id
from shared.events.commerce import PurchaseCompleted
from shared.events.loyalty import PointsEarned, PointsEarnedData
from shared.http import NotFound

SOURCE = "keepwell/loyalty"


class MemberNotFound(NotFound):
    code = "member_not_found"


def base_points(amount: Decimal, rate: Decimal) -> int:
    """Points for an amount: rate per currency unit, rounded down to a whole point."""
    return int((amount * rate).to_integral_value(rounding=ROUND_FLOOR))


async def award_purchase_points(
    session: AsyncSession, *, event: PurchaseCompleted, rate: Decimal
) -> int:
    points = base_points(event.data.total.amount, rate)
    if points <= 0:
        return 0
    member = await repository.get_member_for_update(session, event.subject)
    member.balance += points
    member.lifetime_earned += points
    reason = f"base: {rate} point(s) per {event.data.total.currency}"
    session.add(
        LedgerEntry(
            customer_id=member.customer_id,
            kind="earn",
            points=points,
            balance_after=member.balance,
            reason=reason,
            source_event_id=event.id,
            purchase_id=event.data.purchase_id,
            occurred_at=event.time,
        )
    )
    earned = PointsEarnedData(
        points=points,
        balance=member.balance,
        reason=reason,
        source_event_id=event.id,
        purchase_id=event.data.purchase_id,
    )
    await outbox.enqueue(
        session,
        PointsEarned.create(
            id=derived_id("points.earned", event.source, event.id),
            subject=member.customer_id,
            source=SOURCE,
            time=event.time,
            data=earned,
        ),
    )
    return points


async def get_member(session: AsyncSession, *, customer_id: str) -> Member:
    member = await repository.get_member(session, customer_id)
    if member is None:
        raise MemberNotFound(f"no loyalty member with customer id {customer_id!r}")
    return member
