"""Journey statistics and attribution: what each journey sent, and what it brought back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import FAILED, SENT, SUPPRESSED, Conversion, Outreach
from shared.db import dialect_insert


@dataclass(frozen=True, slots=True)
class JourneyStats:
    journey: str
    channel: str
    sent: int
    suppressed: int
    failed: int
    conversions: int


async def list_journey_stats(
    session: AsyncSession, *, start: datetime, end: datetime
) -> list[JourneyStats]:
    """Per journey and channel, messages whose trigger happened in [start, end) (event time).

    ``channel`` is where the message went (or, unsent, the channel it was planned on).
    ``conversions`` counts purchases attributed to the journey's sent messages (see
    ``attribute_purchase``), whenever those purchases came. Pending messages count
    nowhere yet. Rows with no message in the period are left out.
    """
    at = func.coalesce(Outreach.trigger_at, Outreach.due_at)
    converted = (
        select(Conversion.outreach_id, func.count().label("n"))
        .group_by(Conversion.outreach_id)
        .subquery()
    )

    def _count(status: str) -> Any:
        return func.sum(case((Outreach.status == status, 1), else_=0))

    stmt = (
        select(
            Outreach.journey,
            Outreach.channel,
            _count(SENT),
            _count(SUPPRESSED),
            _count(FAILED),
            func.coalesce(func.sum(converted.c.n), 0),
        )
        .outerjoin(converted, converted.c.outreach_id == Outreach.id)
        .where(at >= start, at < end)
        .group_by(Outreach.journey, Outreach.channel)
        .order_by(Outreach.journey, Outreach.channel)
    )
    rows = (await session.execute(stmt)).all()
    return [
        JourneyStats(str(j), str(c), int(s or 0), int(u or 0), int(f or 0), int(n or 0))
        for j, c, s, u, f, n in rows
    ]


async def attribute_purchase(
    session: AsyncSession,
    *,
    customer_id: str,
    purchase_key: str,
    purchased_at: datetime,
    since: datetime,
) -> str | None:
    """Attribute a purchase to the last message sent to the customer in [since, purchased_at].

    Last touch wins; staff alerts (fixed recipient) never count. Returns the outreach
    id, or None when no message qualifies. A purchase is attributed once.
    """
    stmt = (
        select(Outreach.id)
        .where(
            Outreach.customer_id == customer_id,
            Outreach.status == SENT,
            Outreach.to_address.is_(None),
            Outreach.sent_at >= since,
            Outreach.sent_at <= purchased_at,
        )
        .order_by(Outreach.sent_at.desc(), Outreach.id.desc())
        .limit(1)
    )
    outreach_id = (await session.execute(stmt)).scalar_one_or_none()
    if outreach_id is None:
        return None
    await record_conversion(
        session,
        purchase_key=purchase_key,
        outreach_id=str(outreach_id),
        customer_id=customer_id,
        purchased_at=purchased_at,
    )
    return str(outreach_id)


async def record_conversion(
    session: AsyncSession,
    *,
    purchase_key: str,
    outreach_id: str,
    customer_id: str,
    purchased_at: datetime,
) -> None:
    """The purchase was brought back by ``outreach_id``; a purchase is attributed once."""
    values = {
        "purchase_key": purchase_key,
        "outreach_id": outreach_id,
        "customer_id": customer_id,
        "purchased_at": purchased_at,
    }
    insert = dialect_insert(session)(Conversion).values(**values)
    await session.execute(insert.on_conflict_do_nothing(index_elements=["purchase_key"]))
