"""Keeps ``segment_sales`` equal to the money history of each segment's current members.

Invariant: for every segment S, day d and currency c, ``segment_sales`` holds the
orders and net revenue (purchases minus refunds) of the timeline money entries
on day d in currency c whose customer is a member of S now. Each primitive that
changes a membership or a customer's money entries keeps it, in the caller's
transaction; the repository calls them:

* a customer joins / leaves S: its whole money history is added / taken away;
* a money entry is added to a customer's timeline: added to the customer's segments;
* entries move between customers (merge, undo) or are deleted (erasure): taken
  from the source's segments, added to the target's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.profile.models import SegmentMember, SegmentSales, TimelineEntry
from shared.db import dialect_insert

PURCHASE, REFUND = "purchase.completed", "purchase.refunded"


@dataclass(frozen=True, slots=True)
class Money:
    day: date
    currency: str
    orders: int
    revenue: Decimal


def entry(kind: str, at: datetime, amount: Decimal, currency: str) -> Money:
    """One timeline money entry as a rollup delta."""
    bought = kind == PURCHASE
    return Money(at.astimezone(UTC).date(), currency, int(bought), amount if bought else -amount)


def utc_day(session: AsyncSession, column: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone(literal_column("'UTC'"), column))
    return func.date(column)  # SQLite keeps UTC text: its date part


async def history(
    session: AsyncSession, customer_id: str, *, origin_id: str | None = None
) -> list[Money]:
    """A customer's money entries (optionally only those from ``origin_id``) by day."""
    t = TimelineEntry
    day = utc_day(session, t.occurred_at)
    stmt = (
        select(
            day,
            t.currency,
            func.count().filter(t.kind == PURCHASE),
            func.sum(case((t.kind == PURCHASE, t.amount), else_=-t.amount)),
        )
        .where(t.customer_id == customer_id, t.kind.in_((PURCHASE, REFUND)))
        .where(t.currency.is_not(None))
        .group_by(day, t.currency)
    )
    if origin_id is not None:
        stmt = stmt.where(t.origin_id == origin_id)
    rows = (await session.execute(stmt)).all()
    return [Money(_as_date(d), c, int(n), Decimal(str(r or 0))) for d, c, n, r in rows]


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def segments_of(session: AsyncSession, customer_id: str) -> list[str]:
    return await session.run_sync(segments_of_sync, customer_id)


def segments_of_sync(session: Session, customer_id: str) -> list[str]:
    stmt = select(SegmentMember.segment).where(SegmentMember.customer_id == customer_id)
    return list(session.execute(stmt).scalars())


async def add(
    session: AsyncSession, segments: Sequence[str], deltas: Iterable[Money], sign: int = 1
) -> None:
    await session.run_sync(add_sync, segments, list(deltas), sign)


def add_sync(
    session: Session, segments: Sequence[str], deltas: Iterable[Money], sign: int = 1
) -> None:
    """``add`` on the sync session (also used by writes held until commit)."""
    add_rows(session, [(s, m, sign) for m in deltas for s in segments])


def add_rows(session: Session, changes: Iterable[tuple[str, Money, int]]) -> None:
    """Add each (segment, money, sign) to ``segment_sales``, one statement for all
    (deltas for the same segment, day and currency are summed first)."""
    summed: dict[tuple[str, date, str], list[Any]] = {}
    for segment, m, sign in changes:
        row = summed.setdefault((segment, m.day, m.currency), [0, Decimal(0)])
        row[0] += sign * m.orders
        row[1] += sign * m.revenue
    rows = [
        {"segment": s, "day": d, "currency": c, "orders": n, "revenue": r}
        for (s, d, c), (n, r) in sorted(summed.items())
    ]
    if not rows:
        return
    stmt = dialect_insert(session)(SegmentSales)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["segment", "day", "currency"],
            set_={
                "orders": SegmentSales.orders + stmt.excluded.orders,
                "revenue": SegmentSales.revenue + stmt.excluded.revenue,
            },
        ),
        rows,
    )


async def joined(session: AsyncSession, segment: str, customer_id: str) -> None:
    await add(session, [segment], await history(session, customer_id))


async def left(session: AsyncSession, segment: str, customer_id: str) -> None:
    await add(session, [segment], await history(session, customer_id), sign=-1)


async def entry_added(session: AsyncSession, customer_id: str, money: Money) -> None:
    await add(session, await segments_of(session, customer_id), [money])


async def moving(
    session: AsyncSession, source: str, target: str | None, *, origin_id: str | None = None
) -> None:
    """Before entries of ``source`` (from ``origin_id``) move to ``target`` (None: deleted)."""
    moved = await history(session, source, origin_id=origin_id)
    if not moved:
        return
    await add(session, await segments_of(session, source), moved, sign=-1)
    if target is not None:
        await add(session, await segments_of(session, target), moved)
