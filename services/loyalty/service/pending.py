"""Pending points: purchase points locked for ``pending_days`` before they can be spent.

A locked lot counts in the balance (and in ``member.pending``) but not in what can
be spent, so a return inside the window takes its points back without leaving the
member owing anything. The member's release timer is due at the soonest locked lot,
in event time; when it fires every lot due by then unlocks (``points.released``) and
the timer moves to the next one. Timers due in the past fire at once, so a restart
or downtime only delays a release.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.service import schedule
from services.loyalty.service.common import SOURCE, utc
from shared import outbox
from shared.events import derived_id
from shared.events.loyalty import PointsReleased, PointsReleasedData
from shared.timers import Timer


async def release_due(session: AsyncSession, timer: Timer) -> None:
    customer_id = timer.payload["customer_id"]
    member = await repository.lock_member_or_none(session, customer_id)
    if member is None or member.customer_id != customer_id:
        return  # merged away (the survivor has its own timer) or erased
    due = utc(timer.due_at)
    lots = await repository.lots_to_release(session, member.customer_id, due)
    points = sum(lot.remaining for lot in lots)
    for lot in lots:
        lot.pending_until = None
    member.pending -= points
    if points > 0:
        await outbox.enqueue(
            session,
            PointsReleased.create(
                id=derived_id("points.released", timer.key),
                subject=member.customer_id,
                source=SOURCE,
                time=due,
                data=PointsReleasedData(
                    points=points, balance=member.spendable, pending=member.pending
                ),
            ),
        )
    following = await repository.next_release(session, member.customer_id)
    await schedule.move(session, schedule.RELEASE, member, following, fired=timer.key)
