"""Queries on lots: what is left of each earning, its expiry and its lock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import Lot
from shared.key_lists import one_of


async def lots_with_points(
    session: AsyncSession, customer_id: str, *, spendable_only: bool = False
) -> Sequence[Lot]:
    """Lots with points left, the soonest to expire first (never-expiring last)."""
    stmt = (
        select(Lot)
        .where(Lot.customer_id == customer_id, Lot.remaining > 0)
        .order_by(Lot.expires_at.asc().nulls_last(), Lot.id)
    )
    if spendable_only:
        stmt = stmt.where(Lot.pending_until.is_(None))
    return (await session.execute(stmt)).scalars().all()


async def lots_to_release(
    session: AsyncSession, customer_id: str, until: datetime
) -> Sequence[Lot]:
    stmt = select(Lot).where(
        Lot.customer_id == customer_id,
        Lot.pending_until.is_not(None),
        Lot.pending_until <= until,
    )
    return (await session.execute(stmt)).scalars().all()


async def next_release(session: AsyncSession, customer_id: str) -> datetime | None:
    stmt = select(func.min(Lot.pending_until)).where(
        Lot.customer_id == customer_id, Lot.remaining > 0, Lot.pending_until.is_not(None)
    )
    value: datetime | None = (await session.execute(stmt)).scalar_one()
    return value


async def lots_due(session: AsyncSession, customer_id: str, until: datetime) -> Sequence[Lot]:
    stmt = (
        select(Lot)
        .where(Lot.customer_id == customer_id, Lot.remaining > 0, Lot.expires_at <= until)
        .order_by(Lot.expires_at, Lot.id)
    )
    return (await session.execute(stmt)).scalars().all()


async def next_expiry(
    session: AsyncSession, customer_id: str, *, unwarned: bool
) -> datetime | None:
    stmt = select(func.min(Lot.expires_at)).where(
        Lot.customer_id == customer_id, Lot.remaining > 0, Lot.expires_at.is_not(None)
    )
    if unwarned:
        stmt = stmt.where(Lot.warned.is_(False))
    value: datetime | None = (await session.execute(stmt)).scalar_one()
    return value


async def lots_to_warn(session: AsyncSession, customer_id: str, until: datetime) -> Sequence[Lot]:
    stmt = select(Lot).where(
        Lot.customer_id == customer_id,
        Lot.remaining > 0,
        Lot.warned.is_(False),
        Lot.expires_at <= until,
    )
    return (await session.execute(stmt)).scalars().all()


async def lots_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Lot]:
    rows = (await session.execute(select(Lot).where(one_of(Lot.id, ids)))).scalars()
    return {lot.id: lot for lot in rows}
