"""The monthly rollups of the retention report, kept as each customer's purchases change.

``refresh_months`` recomputes one customer's buying months from their purchases (the caller
has them loaded), replaces the customer's ``churn_customer_months`` rows when they differ, and
adds the difference to ``churn_cohort_months``. Late, repeated or out-of-order events (a
refund, an earlier purchase that moves the cohort, a merge) converge to the same rows.
``Changes`` does the same for many customers, and for several changes of one customer, in
one transaction (a read-ahead run of purchases): one read, then each table written in one
statement, each rollup row changed by the sum of what each change would have added.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn.models import (
    ChurnCohortMonth,
    ChurnCustomerCohort,
    ChurnCustomerMonth,
    ChurnMonthBuyers,
)
from shared.db import dialect_insert
from shared.key_lists import one_of

SHARDS = 16
# purchases, net revenue, currency, cohort, bought the month before
Month = tuple[int, Decimal, str, int, bool]


class Bought(Protocol):
    """What the months need of a purchase (a ``ChurnPurchase`` row or a held copy)."""

    @property
    def purchase_id(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def refunded(self) -> Decimal: ...


def month_of(at: datetime) -> int:
    utc = at.astimezone(UTC)
    return utc.year * 12 + utc.month - 1


def buying_months(purchases: Iterable[Bought]) -> dict[int, Month]:
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
    session: AsyncSession, customer_id: str, purchases: Sequence[Bought]
) -> None:
    changes = Changes(await read_months(session, [customer_id]))
    changes.set(customer_id, buying_months(purchases))
    await changes.write(session)


async def read_months(
    session: AsyncSession, customer_ids: Sequence[str]
) -> dict[str, dict[int, Month]]:
    """The customers' stored buying months (an empty dict for a customer with none)."""
    rows = await session.execute(
        select(
            ChurnCustomerMonth.customer_id,
            ChurnCustomerMonth.month,
            ChurnCustomerMonth.purchases,
            ChurnCustomerMonth.revenue,
            ChurnCustomerMonth.currency,
            ChurnCustomerMonth.cohort,
            ChurnCustomerMonth.prev_active,
        ).where(one_of(ChurnCustomerMonth.customer_id, customer_ids))
    )
    stored: dict[str, dict[int, Month]] = {c: {} for c in customer_ids}
    for customer_id, m, n, v, cur, c, r in rows:
        stored[customer_id][m] = (n, Decimal(v), cur, c, r)
    return stored


class Changes:
    """Customers' buying months as they change in a transaction, written by ``write``.

    ``set`` takes a customer's months after each change (one-by-one handling would
    write them each time); the rollups get the sum of the differences each change makes,
    and the rows it touched stay touched even when the changes cancel out, so the tables
    end as one change at a time leaves them.
    """

    def __init__(self, stored: dict[str, dict[int, Month]]) -> None:
        self._stored = stored  # as read; every customer ``set`` is given must be in it
        self._current: dict[str, dict[int, Month]] = {}  # the changed customers' months
        self._cohorts: dict[tuple[int, Key], Values] = {}
        self._buyers: dict[tuple[int, Key], Values] = {}

    def set(self, customer_id: str, months: dict[int, Month]) -> None:
        before = self._current.get(customer_id, self._stored[customer_id])
        if months == before:
            return
        shard = _shard(customer_id)
        _add(self._cohorts, shard, _delta(_cohorts(months), _cohorts(before)))
        _add(self._buyers, shard, _delta(_buyers(months), _buyers(before)))
        self._current[customer_id] = months

    async def write(self, session: AsyncSession) -> None:
        """Write what changed, each table in one statement, in customer or key order."""
        changed = sorted(self._current)
        if not changed:
            return
        await _set_cohorts(session, [(c, self._current[c]) for c in changed])
        stale = [c for c in changed if self._stored[c]]
        if stale:  # (none read: none to delete)
            await session.execute(
                delete(ChurnCustomerMonth).where(one_of(ChurnCustomerMonth.customer_id, stale))
            )
        rows = [
            {
                "customer_id": customer_id,
                "month": m,
                "purchases": n,
                "revenue": v,
                "currency": cur,
                "cohort": c,
                "prev_active": r,
            }
            for customer_id in changed
            for m, (n, v, cur, c, r) in self._current[customer_id].items()
        ]
        if rows:
            await session.execute(insert(ChurnCustomerMonth), rows)
        await _apply(session, ChurnCohortMonth, self._cohorts)
        await _apply(session, ChurnMonthBuyers, self._buyers)
        self._stored.update(self._current)
        self._current, self._cohorts, self._buyers = {}, {}, {}


async def _set_cohorts(
    session: AsyncSession, customers: list[tuple[str, dict[int, Month]]]
) -> None:
    """Replace each customer's cohort row (one upsert), or delete it when nothing is bought."""
    gone = [c for c, months in customers if not months]
    if gone:
        await session.execute(
            delete(ChurnCustomerCohort).where(one_of(ChurnCustomerCohort.customer_id, gone))
        )
    rows = [_cohort_row(c, months) for c, months in customers if months]
    if not rows:
        return
    table = cast(Table, ChurnCustomerCohort.__table__)
    stmt = dialect_insert(session)(table)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={"cohort": stmt.excluded.cohort, "second": stmt.excluded.second},
        ),
        rows,
    )


def _cohort_row(customer_id: str, months: dict[int, Month]) -> dict[str, Any]:
    ordered = sorted(months)
    cohort = ordered[0]
    second = cohort if months[cohort][0] >= 2 else (ordered[1] if len(ordered) > 1 else None)
    return {"customer_id": customer_id, "cohort": cohort, "second": second}


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


def _add(into: dict[tuple[int, Key], Values], shard: int, changes: dict[Key, Values]) -> None:
    for key, values in changes.items():
        total = into.setdefault((shard, key), dict.fromkeys(values, 0))
        for column, value in values.items():
            total[column] += value


async def _apply(
    session: AsyncSession,
    model: type[ChurnCohortMonth | ChurnMonthBuyers],
    changes: dict[tuple[int, Key], Values],
) -> None:
    """Add the changes to the rollup rows in one statement, in (shard, key) order (no two
    writers deadlock)."""
    if not changes:
        return
    table = cast(Table, model.__table__)
    keys = [c.name for c in table.primary_key if c.name != "shard"]
    counts = [c.name for c in table.columns if not c.primary_key]
    rows = [
        {**dict(zip(keys, key, strict=True)), "shard": shard, **changes[shard, key]}
        for shard, key in sorted(changes, key=lambda k: (k[0], str(k[1])))
    ]
    stmt = dialect_insert(session)(table)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[*keys, "shard"],
            set_={c: table.c[c] + stmt.excluded[c] for c in counts},
        ),
        rows,
    )
