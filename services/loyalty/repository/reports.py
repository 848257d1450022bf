"""Queries behind the reports: SQL aggregation only, nothing loaded row by row."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Date, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import DailyPoints, DailyRevenue, Lot, Member, TierChange


async def liability_by_tier(session: AsyncSession) -> list[tuple[str | None, int, int]]:
    stmt = (
        select(Member.tier, func.count(), func.coalesce(func.sum(Member.balance), 0))
        .where(Member.balance > 0)
        .group_by(Member.tier)
    )
    return [(t, int(n), int(p)) for t, n, p in (await session.execute(stmt)).all()]


def _month(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    """The UTC month of a time or date: a timestamp on PostgreSQL, 'YYYY-MM' on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return func.strftime("%Y-%m", column)
    if isinstance(column.type, Date):
        return func.date_trunc("month", column)
    return func.date_trunc("month", func.timezone("UTC", column))


def month_key(value: Any) -> str:
    return value.strftime("%Y-%m") if isinstance(value, datetime) else str(value)


async def liability_by_expiry_month(session: AsyncSession) -> list[tuple[str | None, int]]:
    month = _month(session, Lot.expires_at)
    stmt = (
        select(month.label("month"), func.sum(Lot.remaining))
        .where(Lot.remaining > 0)
        .group_by(month)
        .order_by(month)
    )
    rows = (await session.execute(stmt)).all()
    return [(None if m is None else month_key(m), int(p)) for m, p in rows]


async def points_by_month_and_kind(
    session: AsyncSession, start: date, end: date
) -> list[tuple[str, str, int]]:
    month = _month(session, DailyPoints.day)
    stmt = (
        select(month, DailyPoints.kind, func.sum(DailyPoints.points))
        .where(DailyPoints.day >= start, DailyPoints.day < end)
        .group_by(month, DailyPoints.kind)
    )
    return [(month_key(m), k, int(p)) for m, k, p in (await session.execute(stmt)).all()]


async def members_by_tier(session: AsyncSession) -> list[tuple[str | None, int, int]]:
    """Per stored tier, in one pass over the members: how many there are now (not merged
    away, not erased), and the points they hold (positive balances, spendable and pending;
    debts are not netted against them)."""
    current = case((Member.merged_into.is_(None) & Member.erased_at.is_(None), 1), else_=0)
    held = case((Member.balance > 0, Member.balance), else_=0)
    stmt = select(Member.tier, func.sum(current), func.sum(held)).group_by(Member.tier)
    return [(t, int(n), int(p)) for t, n, p in (await session.execute(stmt)).all()]


async def tier_moves_by_month(
    session: AsyncSession, start: datetime, end: datetime
) -> list[tuple[str, str, int]]:
    month = _month(session, TierChange.occurred_at)
    stmt = (
        select(month, TierChange.direction, func.count())
        .where(TierChange.occurred_at >= start, TierChange.occurred_at < end)
        .group_by(month, TierChange.direction)
    )
    return [(month_key(m), d, int(n)) for m, d, n in (await session.execute(stmt)).all()]


async def revenue_by_tier(
    session: AsyncSession, start: date, end: date
) -> list[tuple[str | None, str, int, Decimal]]:
    stmt = (
        select(
            DailyRevenue.tier,
            DailyRevenue.currency,
            func.sum(DailyRevenue.orders),
            func.sum(DailyRevenue.revenue),
        )
        .where(DailyRevenue.day >= start, DailyRevenue.day < end)
        .group_by(DailyRevenue.tier, DailyRevenue.currency)
    )
    rows = (await session.execute(stmt)).all()
    return [(t or None, c, int(n), Decimal(str(total))) for t, c, n, total in rows]
