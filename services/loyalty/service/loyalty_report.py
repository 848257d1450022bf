"""GET /v1/reports/loyalty: points per month, liability, tiers, revenue by tier.

Every figure is one SQL aggregate (see ``repository.reports``); months are UTC
calendar months of the entries' event time (``occurred_at``). Definitions are in
docs/loyalty.md ("Reports").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.config import LoyaltySettings
from services.loyalty.repository import reports as queries
from services.loyalty.service import rulebook
from services.loyalty.service.period import Period
from services.loyalty.service.rules import Rules

CENT = Decimal("0.01")
NO_TIER = "(none)"

# How each ledger kind counts in a month's columns (merges move points, they net out).
COLUMNS: dict[str, tuple[str, int]] = {
    "earn": ("issued", 1),
    "redeem": ("redeemed", -1),
    "cancel": ("redeemed", -1),  # points given back lower what was redeemed
    "expire": ("expired", -1),
    "reverse": ("reversed", -1),
    "adjust": ("adjusted", 1),
    "forfeit": ("adjusted", 1),
}


@dataclass(frozen=True)
class Month:
    month: str
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    reversed: int = 0
    adjusted: int = 0


@dataclass(frozen=True)
class LoyaltyReport:
    start: str
    end: str
    generated_at: datetime
    months: list[Month]
    liability: dict[str, object]
    tiers: list[dict[str, object]]
    tier_movements: list[dict[str, object]]
    revenue_by_tier: list[dict[str, object]]


async def build(
    session: AsyncSession, *, period: Period, settings: LoyaltySettings, now: datetime
) -> LoyaltyReport:
    rules = await rulebook.current(session, settings)
    start, end = period.starts_at, period.ends_at
    days = (period.start, period.end)
    members = await queries.members_by_tier(session)
    outstanding = sum(points for _, _, points in members)
    per_point = settings.point_value_by_currency[settings.report_currency]
    return LoyaltyReport(
        start=period.start.isoformat(),
        end=period.end.isoformat(),
        generated_at=now,
        months=_months(period, await queries.points_by_month_and_kind(session, *days)),
        liability={
            "points": outstanding,
            "value": str((outstanding * per_point).quantize(CENT)),
            "currency": settings.report_currency,
            "as_of": now,
        },
        tiers=_tiers(rules, [(tier, n) for tier, n, _ in members if n]),
        tier_movements=_movements(period, await queries.tier_moves_by_month(session, start, end)),
        revenue_by_tier=_revenue(rules, await queries.revenue_by_tier(session, *days)),
    )


def _months(period: Period, rows: list[tuple[str, str, int]]) -> list[Month]:
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for month, kind, points in rows:
        if kind in COLUMNS:
            column, sign = COLUMNS[kind]
            sums[month][column] += sign * points
    return [Month(month=m, **sums.get(m, {})) for m in period.months()]


def _movements(period: Period, rows: list[tuple[str, str, int]]) -> list[dict[str, object]]:
    counts = {(m, d): n for m, d, n in rows}
    return [
        {"month": m, "upgrades": counts.get((m, "up"), 0), "downgrades": counts.get((m, "down"), 0)}
        for m in period.months()
    ]


def _order(rules: Rules, names: set[str]) -> list[str]:
    """The configured tiers lowest first, then any other stored name, then no tier."""
    configured = [t.name for t in rules.sorted_tiers()]
    others = sorted(names - set(configured) - {NO_TIER})
    return configured + others + ([NO_TIER] if NO_TIER in names else [])


def _tiers(rules: Rules, rows: list[tuple[str | None, int]]) -> list[dict[str, object]]:
    lowest = rules.tier(None)
    counts: dict[str, int] = defaultdict(int)
    for tier, members in rows:
        name = tier if tier is not None else (lowest.name if lowest is not None else NO_TIER)
        counts[name] += members
    return [{"tier": name, "members": counts.get(name, 0)} for name in _order(rules, set(counts))]


def _revenue(
    rules: Rules, rows: list[tuple[str | None, str, int, Decimal]]
) -> list[dict[str, object]]:
    totals: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for tier, currency, orders, revenue in rows:
        key = (tier or NO_TIER, currency)
        n, r = totals.get(key, (0, Decimal(0)))
        totals[key] = (n + orders, r + revenue)
    order = _order(rules, {tier for tier, _ in totals})
    return [
        {"tier": tier, "orders": n, "revenue": str(r.quantize(CENT)), "currency": currency}
        for (tier, currency), (n, r) in sorted(
            totals.items(), key=lambda item: (order.index(item[0][0]), item[0][1])
        )
    ]
