"""The retention report: monthly activity and churn, the cohort matrix, repeat purchases.

Read from the monthly rollups the churn part keeps as purchases arrive
(``churn_cohort_months``: customers of a cohort buying in a month, and how many of them also
bought the month before; ``churn_customer_cohorts`` for the repeat-purchase rate), so the
cost does not grow with the number of purchases. Months are whole UTC calendar months: every
month the range touches, plus the month before it as the first month's baseline.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn.models import ChurnCohortMonth, ChurnCustomerCohort
from services.engagement.reports.period import Period, month_label


@dataclass(frozen=True)
class Counts:
    active: dict[int, int]
    retained: dict[int, int]
    cohorts: dict[tuple[int, int], int]  # (cohort, months since) -> customers buying


async def retention(session: AsyncSession, period: Period) -> dict[str, Any]:
    counts = await _counts(session, period)
    return {
        "months": [_month(counts, m) for m in period.months()],
        "cohorts": [_cohort(counts, c, period.last_month) for c in period.months()],
        "repeat_purchase_rate": await _repeat_rate(session, period),
    }


def _month(counts: Counts, m: int) -> dict[str, Any]:
    active, before = counts.active.get(m, 0), counts.active.get(m - 1, 0)
    new = counts.cohorts.get((m, 0), 0)
    retained = counts.retained.get(m, 0)
    churned = before - retained
    return {
        "month": month_label(m),
        "active": active,
        "new": new,
        "returning": active - new,
        "churned": churned,
        "churn_rate": _ratio(churned, before),
        "retention_rate": _ratio(retained, before),
    }


def _cohort(counts: Counts, cohort: int, last: int) -> dict[str, Any]:
    size = counts.cohorts.get((cohort, 0), 0)
    shares = [_ratio(counts.cohorts.get((cohort, k), 0), size) for k in range(last - cohort + 1)]
    return {"cohort": month_label(cohort), "size": size, "retention": shares}


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


async def _counts(session: AsyncSession, period: Period) -> Counts:
    t = ChurnCohortMonth
    rows = await session.execute(
        select(t.cohort, t.month, func.sum(t.active), func.sum(t.retained))
        .where(t.month >= period.first_month - 1, t.month <= period.last_month)
        .group_by(t.cohort, t.month)
    )
    active: dict[int, int] = defaultdict(int)
    retained: dict[int, int] = defaultdict(int)
    cohorts: dict[tuple[int, int], int] = {}
    for cohort, month, n, kept in rows:
        active[month] += int(n)
        retained[month] += int(kept)
        if cohort >= period.first_month:
            cohorts[(cohort, month - cohort)] = int(n)
    return Counts(dict(active), dict(retained), cohorts)


async def _repeat_rate(session: AsyncSession, period: Period) -> float | None:
    """Of the customers whose first purchase falls in the range's months, the share who
    bought again (a second purchase, the same month or later) before the range ends."""
    t = ChurnCustomerCohort
    again = case((t.second <= period.last_month, 1), else_=0)
    new, repeaters = (
        await session.execute(
            select(func.count(), func.sum(again)).where(
                t.cohort >= period.first_month, t.cohort <= period.last_month
            )
        )
    ).one()
    return _ratio(int(repeaters or 0), int(new))
