"""Queries behind the reports."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import Lot, Member


async def liability_by_tier(session: AsyncSession) -> list[tuple[str | None, int, int]]:
    stmt = (
        select(Member.tier, func.count(), func.coalesce(func.sum(Member.balance), 0))
        .where(Member.balance > 0)
        .group_by(Member.tier)
    )
    return [(t, int(n), int(p)) for t, n, p in (await session.execute(stmt)).all()]


async def liability_by_expiry_month(session: AsyncSession) -> list[tuple[str | None, int]]:
    if session.get_bind().dialect.name == "postgresql":
        month = func.to_char(func.timezone("UTC", Lot.expires_at), "YYYY-MM")
    else:
        month = func.strftime("%Y-%m", Lot.expires_at)
    stmt = (
        select(month.label("month"), func.sum(Lot.remaining))
        .where(Lot.remaining > 0)
        .group_by(month)
        .order_by(month)
    )
    return [(m, int(p)) for m, p in (await session.execute(stmt)).all()]
