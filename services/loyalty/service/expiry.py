"""Expiry and the warning before it, fired by durable timers in event time.

A lot expires at its earning's event time + ``expiry_days``. The member's expiry
timer is due at its soonest lot; when it fires, every lot due by then loses what
is left in it, and the timer is re-armed for the next lot. Timers due in the past
(after downtime, or for imported history) fire at once, one due date per firing.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.config import LoyaltySettings
from services.loyalty.models import Member
from services.loyalty.service import ledger, rulebook, schedule
from services.loyalty.service.common import SOURCE, utc
from services.loyalty.service.ledger import Why
from shared import outbox
from shared.events import derived_id
from shared.events.loyalty import (
    PointsExpired,
    PointsExpiredData,
    PointsExpiring,
    PointsExpiringData,
)
from shared.timers import Timer


async def _owner(session: AsyncSession, timer: Timer) -> Member | None:
    customer_id = timer.payload["customer_id"]
    member = await repository.lock_member_or_none(session, customer_id)
    if member is None or member.customer_id != customer_id:
        return None  # merged away or erased: its lots and timers moved or are gone
    return member


async def expire_due(session: AsyncSession, timer: Timer) -> None:
    member = await _owner(session, timer)
    if member is None:
        return
    due = utc(timer.due_at)
    lots = await repository.lots_due(session, member.customer_id, due)
    points = sum(lot.remaining for lot in lots)
    for lot in lots:
        if lot.pending_until is not None:  # only if a rule change let expiry overtake it
            member.pending -= lot.remaining
            lot.pending_until = None
        lot.remaining = 0
    if points > 0:
        why = Why(
            reason=f"{points} points reached their expiry date",
            key=f"expire:timer:{timer.id}:{due.isoformat()}",
            rule_id="expiry",
        )
        ledger.post(session, member, kind="expire", points=-points, why=why, at=due)
        await outbox.enqueue(
            session,
            PointsExpired.create(
                id=derived_id("points.expired", timer.key, str(timer.id)),
                subject=member.customer_id,
                source=SOURCE,
                time=due,
                data=PointsExpiredData(points=points, balance=member.spendable),
            ),
        )
    following = await repository.next_expiry(session, member.customer_id, unwarned=False)
    await schedule.move(session, schedule.EXPIRE, member, following, fired=timer.key)


async def warn_expiring(session: AsyncSession, timer: Timer, *, settings: LoyaltySettings) -> None:
    member = await _owner(session, timer)
    if member is None:
        return
    notice = timedelta(days=(await rulebook.current(session, settings)).body.expiring_notice_days)
    due = utc(timer.due_at)
    lots = [
        lot
        for lot in await repository.lots_to_warn(session, member.customer_id, due + notice)
        if lot.expires_at is not None
    ]
    for lot in lots:
        lot.warned = True
    if lots:
        soonest = min(utc(lot.expires_at) for lot in lots if lot.expires_at is not None)
        await outbox.enqueue(
            session,
            PointsExpiring.create(
                id=derived_id("points.expiring", timer.key, str(timer.id)),
                subject=member.customer_id,
                source=SOURCE,
                time=due,
                data=PointsExpiringData(
                    points=sum(lot.remaining for lot in lots),
                    expires_at=soonest,
                    balance=member.spendable,
                ),
            ),
        )
    following = await repository.next_expiry(session, member.customer_id, unwarned=True)
    next_notice = following - notice if following is not None and notice else None
    await schedule.move(session, schedule.NOTICE, member, next_notice, fired=timer.key)
