"""The engagement report: what each journey sent and brought back, and the at-risk picture."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import and_, distinct, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.engagement.churn.models import ChurnBandChange, ChurnCustomer, ChurnPurchase
from services.engagement.reports.period import Period
from services.engagement.reports.sql import kept
from services.engagement.reports.value import money
from services.engagement.repository import list_journey_stats

HIGH = "high"
TOP_AT_RISK = 50


async def engagement(session: AsyncSession, period: Period) -> dict[str, Any]:
    stats = await list_journey_stats(session, start=period.start_at, end=period.end_at)
    return {
        "journeys": [asdict(s) for s in stats],
        "at_risk": await _at_risk(session, period),
        "at_risk_customers": await _top_at_risk(session),
    }


async def _at_risk(session: AsyncSession, period: Period) -> dict[str, int]:
    high_now = await session.scalar(select(func.count()).where(ChurnCustomer.band == HIGH))
    entered = and_(
        ChurnBandChange.band == HIGH,
        ChurnBandChange.changed_at >= period.start_at,
        ChurnBandChange.changed_at < period.end_at,
    )
    bought_after = exists().where(
        ChurnPurchase.customer_id == ChurnBandChange.customer_id,
        ChurnPurchase.occurred_at > ChurnBandChange.changed_at,
        ChurnPurchase.occurred_at < period.end_at,
        kept(),
    )
    customers = func.count(distinct(ChurnBandChange.customer_id))
    entered_high = await session.scalar(select(customers).where(entered))
    won_back = await session.scalar(select(customers).where(entered, bought_after))
    return {
        "high_now": int(high_now or 0),
        "entered_high": int(entered_high or 0),
        "won_back": int(won_back or 0),
    }


async def _top_at_risk(session: AsyncSession) -> list[dict[str, Any]]:
    """The high-band customers with the most value at stake (risk x CLV), then the riskiest."""
    latest = aliased(ChurnPurchase)
    last_purchase = (
        select(func.max(latest.occurred_at))
        .where(latest.customer_id == ChurnCustomer.customer_id)
        .scalar_subquery()
    )
    stake = ChurnCustomer.risk * func.coalesce(ChurnCustomer.clv, 0)
    rows = (
        await session.execute(
            select(ChurnCustomer, last_purchase)
            .where(ChurnCustomer.band == HIGH)
            .order_by(stake.desc(), ChurnCustomer.risk.desc(), ChurnCustomer.customer_id)
            .limit(TOP_AT_RISK)
        )
    ).all()
    return [
        {
            "customer_id": c.customer_id,
            "risk": c.risk,
            "band": c.band,
            "reasons": list(c.reasons or []),
            "clv": money(c.clv),
            "currency": c.currency,
            "last_purchase_at": last.isoformat() if last is not None else None,
        }
        for c, last in rows
    ]
