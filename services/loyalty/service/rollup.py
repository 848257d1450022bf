"""Daily rollups the report reads instead of scanning the ledger and the purchases.

Every ledger entry and purchase is counted here as it is written: the amounts are
gathered on the session and added at commit by one multi-row upsert per table
(``before_commit``), so a consumer batch pays one statement, not one per event, and
a rolled-back transaction counts nothing. Rows are keyed by UTC day of event time;
``shard`` (a hash of the customer) spreads concurrent writers of the same day over
several rows, and rows are written in key order so concurrent writers cannot deadlock.
Invariant (checked by the tests): the rollups equal the ledger and purchases grouped.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.loyalty.models import DailyPoints, DailyRevenue
from services.loyalty.service.common import utc
from shared.db import per_dialect

SHARDS = 16
_KEY = "loyalty.rollup"
_HOOKED = "loyalty.rollup_hooked"


@dataclass
class _Counts:
    points: dict[tuple[date, str, int], int] = field(default_factory=lambda: defaultdict(int))
    orders: dict[tuple[date, str, str, int], int] = field(default_factory=lambda: defaultdict(int))
    revenue: dict[tuple[date, str, str, int], Decimal] = field(
        default_factory=lambda: defaultdict(Decimal)
    )


def shard(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode()) % SHARDS


def _counts(session: AsyncSession) -> _Counts:
    sync = session.sync_session
    if not sync.info.get(_HOOKED):
        sync.info[_HOOKED] = True
        event.listen(sync, "before_commit", _write)
        event.listen(sync, "after_rollback", _forget)
    counts = sync.info.get(_KEY)
    if not isinstance(counts, _Counts):
        counts = sync.info[_KEY] = _Counts()
    return counts


def count_points(
    session: AsyncSession, *, customer_id: str, kind: str, points: int, at: datetime
) -> None:
    _counts(session).points[(utc(at).date(), kind, shard(customer_id))] += points


def count_purchase(
    session: AsyncSession,
    *,
    customer_id: str,
    tier: str | None,
    currency: str,
    total: Decimal,
    at: datetime,
) -> None:
    key = (utc(at).date(), tier or "", currency, shard(customer_id))
    counts = _counts(session)
    counts.orders[key] += 1
    counts.revenue[key] += total


def _forget(session: Session, *_: Any) -> None:
    session.info.pop(_KEY, None)


@per_dialect
def _upserts(insert: Any) -> tuple[Any, Any]:
    """The two upserts: one single-row statement executed over many rows is compiled once."""
    points = insert(_POINTS)
    revenue = insert(_REVENUE)
    return (
        points.on_conflict_do_update(
            index_elements=["day", "kind", "shard"],
            set_={"points": _POINTS.c.points + points.excluded.points},
        ),
        revenue.on_conflict_do_update(
            index_elements=["day", "tier", "currency", "shard"],
            set_={
                "orders": _REVENUE.c.orders + revenue.excluded.orders,
                "revenue": _REVENUE.c.revenue + revenue.excluded.revenue,
            },
        ),
    )


_POINTS: Table = DailyPoints.__table__  # type: ignore[assignment]
_REVENUE: Table = DailyRevenue.__table__  # type: ignore[assignment]


def _write(session: Session) -> None:
    counts = session.info.pop(_KEY, None)
    if not isinstance(counts, _Counts):
        return
    connection = session.connection()
    points, revenue = _upserts(connection)
    if counts.points:
        rows = [
            {"day": d, "kind": k, "shard": s, "points": p}
            for (d, k, s), p in sorted(counts.points.items())
        ]
        connection.execute(points, rows)
    if counts.orders:
        rows = [
            {"day": d, "tier": t, "currency": c, "shard": s, "orders": n, "revenue": r}
            for ((d, t, c, s), n), r in zip(
                sorted(counts.orders.items()),
                (counts.revenue[k] for k in sorted(counts.orders)),
                strict=True,
            )
        ]
        connection.execute(revenue, rows)
