"""The value report: the CLV distribution of the current scores, and the AOV and purchase
frequency of the range's months (from the monthly rollups, never the purchases)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn.models import ChurnCustomer, ChurnMonthBuyers
from services.engagement.churn.scores import current_model
from services.engagement.churn.settings import churn_settings
from services.engagement.reports.period import Period

BUCKETS = 10
CENT = Decimal("0.01")


def money(value: Any) -> str | None:
    return None if value is None else str(Decimal(value).quantize(CENT))


async def value(session: AsyncSession, period: Period) -> dict[str, Any]:
    model = await current_model(session)
    currency = model.currency if model is not None else None
    clv = await _clv(session)
    clv.update(currency=currency, horizon_days=churn_settings().clv_horizon_days)
    return {"clv": clv, **await _orders(session, period, currency)}


async def _clv(session: AsyncSession) -> dict[str, Any]:
    scored = ChurnCustomer.clv.is_not(None)
    n, total, mean, top = (
        await session.execute(
            select(
                func.count(),
                func.sum(ChurnCustomer.clv),
                func.avg(ChurnCustomer.clv),
                func.max(ChurnCustomer.clv),
            ).where(scored)
        )
    ).one()
    edges = _edges(float(top or 0))
    return {
        "buckets": await _buckets(session, edges) if n else [],
        "median": money(await _median(session, n)),
        "mean": money(mean),
        "total": money(total or 0),
        "customers": n,
    }


def _edges(top: float) -> list[Decimal]:
    """Upper edges of ``BUCKETS`` equal buckets of a round width covering 0..top."""
    raw = max(top, 1.0) / BUCKETS
    magnitude = 10 ** math.floor(math.log10(raw))
    width = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [Decimal(str(width)) * i for i in range(1, BUCKETS + 1)]


async def _buckets(session: AsyncSession, edges: list[Decimal]) -> list[dict[str, Any]]:
    index = case(
        *[(ChurnCustomer.clv < edge, i) for i, edge in enumerate(edges[:-1])],
        else_=len(edges) - 1,
    )
    rows: dict[int, int] = dict(
        (
            await session.execute(
                select(index, func.count()).where(ChurnCustomer.clv.is_not(None)).group_by(index)
            )
        ).all()
    )
    lowers = [Decimal(0), *edges[:-1]]
    return [
        {"lower": money(lo), "upper": money(hi), "customers": rows.get(i, 0)}
        for i, (lo, hi) in enumerate(zip(lowers, edges, strict=True))
    ]


async def _median(session: AsyncSession, n: int) -> Decimal | None:
    if not n:
        return None
    middle = (
        await session.scalars(
            select(ChurnCustomer.clv)
            .where(ChurnCustomer.clv.is_not(None))
            .order_by(ChurnCustomer.clv)
            .offset((n - 1) // 2)
            .limit(2 - n % 2)
        )
    ).all()
    return sum((Decimal(v) for v in middle if v is not None), Decimal(0)) / len(middle)


async def _orders(session: AsyncSession, period: Period, currency: str | None) -> dict[str, Any]:
    """From the monthly rollups: every month the range touches (whole months). A customer
    buying in several of them counts once: in the first, whose ``since`` is before the range."""
    t = ChurnMonthBuyers
    in_range = and_(t.month >= period.first_month, t.month <= period.last_month)
    if currency is None:
        currency = await session.scalar(
            select(t.currency)
            .where(in_range)
            .group_by(t.currency)
            .order_by(func.sum(t.purchases).desc())
            .limit(1)
        )
    same = t.currency == currency
    customers, orders, revenue, priced = (
        await session.execute(
            select(
                func.sum(case((t.since < period.first_month, t.customers), else_=0)),
                func.sum(t.purchases),
                func.sum(case((same, t.revenue), else_=0)),
                func.sum(case((same, t.purchases), else_=0)),
            ).where(in_range)
        )
    ).one()
    customers = int(customers or 0)
    aov = Decimal(revenue) / priced if priced else None
    return {
        "aov": {"amount": money(aov), "currency": currency} if aov is not None else None,
        "purchase_frequency": int(orders) / customers if customers else None,
        "customers": customers,
    }
