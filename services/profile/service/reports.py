"""Profile's report (issue 10): what each segment's customers bought in a period.

``segments_report`` sums ``segment_sales`` — orders and net revenue per segment,
UTC day and currency of the segment's current members, kept up to date by
``services/profile/rollup.py`` — over the days in [from, to), in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.profile.models import Segment, SegmentMember, SegmentSales
from shared.http import AppError

MAX_YEARS = 10
CENT = Decimal("0.01")


class BadRange(AppError):
    status_code = 422
    code = "invalid_range"


@dataclass(frozen=True, slots=True)
class Period:
    start: date  # inclusive
    end: date  # exclusive

    def bounds(self) -> tuple[datetime, datetime]:
        return _midnight(self.start), _midnight(self.end)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period(start: date | None, end: date | None, *, today: date) -> Period:
    """The requested range; by default the 12 whole months before this one, and this one."""
    month = today.replace(day=1)
    start = start if start is not None else _add_months(month, -12)
    end = end if end is not None else _add_months(month, 1)
    if start >= end:
        raise BadRange(f"from ({start}) must be earlier than to ({end})")
    if (end - start).days > MAX_YEARS * 366:
        raise BadRange(f"the range may span at most {MAX_YEARS} years")
    return Period(start, end)


async def segments_report(
    session: AsyncSession, when: Period, *, currency: str, now: datetime
) -> dict[str, Any]:
    members = await _member_counts(session)
    money = await _money_by_segment(session, when)
    rows: list[dict[str, Any]] = []
    for name, expression in (await session.execute(select(Segment.name, Segment.expression))).all():
        customers = members.get(name, 0)
        found = money.get(name) or [(currency, 0, Decimal(0))]
        rows.extend(_row(name, expression, customers, *m) for m in found)
    rows.sort(key=lambda r: (r["segment"], r["currency"]))
    return {
        "report": "segments",
        "from": when.start.isoformat(),
        "to": when.end.isoformat(),
        "generated_at": now.isoformat(),
        "segments": rows,
    }


def _row(
    name: str, expression: str, customers: int, currency: str, orders: int, revenue: Decimal
) -> dict[str, Any]:
    return {
        "segment": name,
        "name": name,
        "expression": expression,
        "customers": customers,
        "orders": orders,
        "revenue": str(revenue.quantize(CENT)),
        "currency": currency,
        "aov": str((revenue / orders).quantize(CENT)) if orders else None,
        "orders_per_customer": orders / customers if customers else None,
    }


async def _member_counts(session: AsyncSession) -> dict[str, int]:
    stmt = select(SegmentMember.segment, func.count()).group_by(SegmentMember.segment)
    return {name: int(n) for name, n in (await session.execute(stmt)).all()}


async def _money_by_segment(
    session: AsyncSession, when: Period
) -> dict[str, list[tuple[str, int, Decimal]]]:
    """Orders and net revenue per segment and currency, summed from the daily rollup."""
    r = SegmentSales
    orders, revenue = func.sum(r.orders), func.sum(r.revenue)
    stmt = (
        select(r.segment, r.currency, orders, revenue)
        .where(r.day >= when.start, r.day < when.end)
        .group_by(r.segment, r.currency)
        .having(or_(orders != 0, revenue != 0))
    )
    found: dict[str, list[tuple[str, int, Decimal]]] = {}
    for segment, cur, n, total in (await session.execute(stmt)).all():
        found.setdefault(segment, []).append((cur, int(n), Decimal(str(total or 0))))
    return found
