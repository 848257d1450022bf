"""The monthly rollups of the retention report, kept as each customer's purchases change.

``refresh_months`` recomputes one customer's buying months from their purchases (the caller
has them loaded), replaces the customer's ``churn_customer_months`` rows when they differ, and
adds the difference to ``churn_cohort_months``. Late, repeated or out-of-order events (a
refund, an earlier purchase that moves the cohort, a merge) converge to the same rows.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn.models import (
    ChurnCohortMonth,
    ChurnCustomerCohort,
    ChurnCustomerMonth,
    ChurnMonthBuyers,
    ChurnPurchase,
)
from shared.db import upsertable_insert

SHARDS = 16
# purchases, net revenue, currency, cohort, bought the month before
Month = tuple[int, Decimal, str, int, bool]


def month_of(at: datetime) -> int:
    utc = at.astimezone(UTC)
    return utc.year * 12 + utc.month - 1


def buying_months(purchases: Iterable[ChurnPurchase]) -> dict[int, Month]:
    kept = sorted(
        (p for p in purchases if p.refunded < p.amount),
        key=lambda p: (p.occurred_at, p.purchase_id),
    )
    if not kept:
        return {}
    currency = kept[0].currency
    counts: Counter[int] = Counter()
    revenue: dict[int, Decimal] = {}
    for p in kept:
        m = month_of(p.occurred_at)
        counts[m] += 1
        net = p.amount - p.refunded if p.currency == currency else Decimal(0)
        revenue[m] = revenue.get(m, Decimal(0)) + net
    cohort = min(counts)
    return {m: (n, revenue[m], currency, cohort, m - 1 in counts) for m, n in counts.items()}


async def refresh_months(
    session: AsyncSession, customer_id: str, purchases: Sequence[ChurnPurchase]
) -> None:
    new = buying_months(purchases)
    rows = await session.execute(
        select(
            ChurnCustomerMonth.month,
            ChurnCustomerMonth.purchases,
            ChurnCustomerMonth.revenue,
            ChurnCustomerMonth.currency,
            ChurnCustomerMonth.cohort,
            ChurnCustomerMonth.prev_active,
        ).where(ChurnCustomerMonth.customer_id == customer_id)
    )
    old = {m: (n, Decimal(v), cur, c, r) for m, n, v, cur, c, r in rows}
    if old == new:
        return
    await _set_cohort(session, customer_id, new)
    if old:  # (none read: none to delete)
        await session.execute(
            delete(ChurnCustomerMonth).where(ChurnCustomerMonth.customer_id == customer_id)
        )
    if new:
        await session.execute(
            insert(ChurnCustomerMonth),
            [
                {
                    "customer_id": customer_id,
                    "month": m,
                    "purchases": n,
                    "revenue": v,
                    "currency": cur,
                    "cohort": c,
                    "prev_active": r,
                }
                for m, (n, v, cur, c, r) in new.items()
            ],
        )
    shard = _shard(customer_id)
    await _apply(session, ChurnCohortMonth, shard, _delta(_cohorts(new), _cohorts(old)))
    await _apply(session, ChurnMonthBuyers, shard, _delta(_buyers(new), _buyers(old)))


async def _set_cohort(session: AsyncSession, customer_id: str, months: dict[int, Month]) -> None:
    """Replace the customer's cohort row (one upsert), or delete it when nothing is bought."""
    if not months:
        await session.execute(
            delete(ChurnCustomerCohort).where(ChurnCustomerCohort.customer_id == customer_id)
        )
        return
    ordered = sorted(months)
    cohort = ordered[0]
    second = cohort if months[cohort][0] >= 2 else (ordered[1] if len(ordered) > 1 else None)
    stmt = upsertable_insert(session)(ChurnCustomerCohort).values(
        customer_id=customer_id, cohort=cohort, second=second
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={"cohort": stmt.excluded.cohort, "second": stmt.excluded.second},
        )
    )


Key = tuple[int | str, ...]
Values = dict[str, Any]


def _cohorts(months: dict[int, Month]) -> dict[Key, Values]:
    """Per (cohort, month): this customer buying (1), and also the month before (0 or 1)."""
    return {
        (cohort, m): {"active": 1, "retained": int(prev_active)}
        for m, (*_, cohort, prev_active) in months.items()
    }


def _buyers(months: dict[int, Month]) -> dict[Key, Values]:
    """Per (month, previous buying month or 0, currency): the customer, purchases, revenue."""
    out: dict[Key, Values] = {}
    since = 0
    for m in sorted(months):
        purchases, revenue, currency, *_ = months[m]
        out[m, since, currency] = {"customers": 1, "purchases": purchases, "revenue": revenue}
        since = m
    return out


def _delta(new: dict[Key, Values], old: dict[Key, Values]) -> dict[Key, Values]:
    changes: dict[Key, Values] = {}
    for key in new.keys() | old.keys():
        after, before = new.get(key, {}), old.get(key, {})
        diff = {c: after.get(c, 0) - before.get(c, 0) for c in after.keys() | before.keys()}
        if any(diff.values()):
            changes[key] = diff
    return changes


def _shard(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode()) % SHARDS


async def _apply(
    session: AsyncSession,
    model: type[ChurnCohortMonth | ChurnMonthBuyers],
    shard: int,
    changes: dict[Key, Values],
) -> None:
    """Add the changes to the rollup rows, in key order (no two writers deadlock)."""
    table = cast(Table, model.__table__)
    keys = [c.name for c in table.primary_key if c.name != "shard"]
    insert_ = upsertable_insert(session)
    for key in sorted(changes, key=str):
        values = changes[key]
        stmt = insert_(table).values(**dict(zip(keys, key, strict=True)), shard=shard, **values)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[*keys, "shard"],
                set_={c: table.c[c] + stmt.excluded[c] for c in values},
            )
        )
