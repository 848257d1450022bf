"""The monthly rollups converge to a recount from scratch, whatever order events come in."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from services.engagement.churn.models import (
    ChurnCohortMonth,
    ChurnCustomerCohort,
    ChurnCustomerMonth,
)
from shared.db import Database
from shared.events import Event
from shared.events.profile import (
    CustomerErased,
    CustomerErasedData,
    CustomerMerged,
    CustomerMergedData,
)
from tests.engagement.churn.support import bought, handle, refunded

pytestmark = pytest.mark.db


def month(day: date) -> int:
    return day.year * 12 + day.month - 1


async def rollups(
    db: Database,
) -> tuple[dict[tuple[int, int], tuple[int, int]], set[tuple[str, int]]]:
    t = ChurnCohortMonth
    async with db.unit_of_work() as session:
        rows = await session.execute(
            select(t.cohort, t.month, func.sum(t.active), func.sum(t.retained)).group_by(
                t.cohort, t.month
            )
        )
        cohorts = {(c, m): (int(a), int(r)) for c, m, a, r in rows if a or r}
        kept = await session.execute(
            select(ChurnCustomerMonth.customer_id, ChurnCustomerMonth.month)
        )
        return cohorts, {(c, m) for c, m in kept}


def recount(purchases: dict[str, list[date]]) -> dict[tuple[int, int], tuple[int, int]]:
    counts: Counter[tuple[int, int, str]] = Counter()
    for days in purchases.values():
        if not days:
            continue
        bought_in = {month(d) for d in days}
        cohort = min(bought_in)
        for m in bought_in:
            counts[cohort, m, "active"] += 1
            counts[cohort, m, "retained"] += int(m - 1 in bought_in)
    keys = {(c, m) for c, m, _ in counts}
    return {(c, m): (counts[c, m, "active"], counts[c, m, "retained"]) for c, m in keys}


async def test_out_of_order_purchases_refunds_a_merge_and_an_erasure_converge(db: Database) -> None:
    rng = random.Random(3)
    start = date(2025, 1, 1)
    kept: dict[str, list[date]] = {}
    events: list[Event] = []
    for c in range(12):
        customer = f"r{c}"
        kept[customer] = []
        for n in range(rng.randint(1, 8)):
            day = start + timedelta(days=rng.randrange(0, 300))
            pid = f"{customer}-{n}"
            events.append(bought(customer, day, "30.00", purchase_id=pid))
            if n % 4 == 3:  # refunded in full: the purchase no longer counts
                events.append(refunded(customer, pid, "30.00", day + timedelta(days=1)))
            else:
                kept[customer].append(day)
                if n % 4 == 1:  # refunded in part: still counts
                    events.append(refunded(customer, pid, "10.00", day + timedelta(days=1)))
    rng.shuffle(events)  # refunds before their purchases, later months before earlier ones
    events += events[:5]  # and some delivered twice
    await handle(db, *events)
    assert (await rollups(db))[0] == recount(kept)

    merge = CustomerMerged.create(
        subject="r0", source="/profile", data=CustomerMergedData(merge_id="m1", merged_id="r1")
    )
    erase = CustomerErased.create(subject="r2", source="/profile", data=CustomerErasedData())
    await handle(db, merge, erase)
    kept["r0"] += kept.pop("r1")
    kept.pop("r2")
    cohorts, customer_months = await rollups(db)
    assert cohorts == recount(kept)
    assert {c for c, _ in customer_months} == {c for c, days in kept.items() if days}
    assert await firsts(db) == {c: first_and_second(days) for c, days in kept.items() if days}


def first_and_second(days: list[date]) -> tuple[int, int | None]:
    ordered = sorted(month(d) for d in days)
    return ordered[0], ordered[1] if len(ordered) > 1 else None


async def firsts(db: Database) -> dict[str, tuple[int, int | None]]:
    async with db.unit_of_work() as session:
        rows = await session.scalars(select(ChurnCustomerCohort))
        return {r.customer_id: (r.cohort, r.second) for r in rows}
