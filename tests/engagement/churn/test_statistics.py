"""Purchase statistics kept from purchase, refund, merge and erasure events (real database)."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

import pytest

from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseRefunded
from shared.events.profile import (
    CustomerErased,
    CustomerErasedData,
    CustomerMerged,
    CustomerMergedData,
)
from tests.engagement.churn.support import bought, customer, customers, fields, handle, refunded

pytestmark = pytest.mark.db

D0 = date(2026, 1, 5)
STATS = (
    "first_day",
    "last_day",
    "purchase_days",
    "repeat_purchases",
    "total_spend",
    "average_order_value",
    "gap_count",
    "gap_median_days",
)


async def test_purchases_make_recency_frequency_and_gaps(db: Database) -> None:
    days = [date(2026, 1, 5), date(2026, 1, 15), date(2026, 1, 27), date(2026, 2, 10)]
    await handle(db, *(bought("c-1", d, "30.00") for d in days))
    row = await customer(db, "c-1")
    assert row is not None
    assert fields(row, *STATS) == (
        days[0],
        days[-1],
        4,
        3,
        Decimal("120.0000"),
        Decimal("30.0000"),
        3,
        12.0,
    )
    assert row.gap_p90_days == pytest.approx(13.6)  # gaps 10, 12, 14
    assert row.repeat_average_value == pytest.approx(30.0)
    assert row.currency == "EUR"


async def test_same_day_purchases_are_one_purchase_day(db: Database) -> None:
    await handle(
        db,
        bought("c-2", D0, "10.00", hour=9),
        bought("c-2", D0, "5.00", hour=18),
        bought("c-2", date(2026, 1, 12), "8.00"),
    )
    row = await customer(db, "c-2")
    assert row is not None
    assert (row.purchase_days, row.repeat_purchases, row.total_spend) == (2, 1, Decimal("23.0000"))
    assert row.repeat_average_value == pytest.approx(8.0)


async def test_refunds_reduce_value_and_a_full_refund_removes_the_purchase(db: Database) -> None:
    first = bought("c-3", D0, "50.00", purchase_id="p-a")
    second = bought("c-3", date(2026, 1, 20), "40.00", purchase_id="p-b")
    await handle(db, first, second, refunded("c-3", "p-b", "10.00", date(2026, 1, 21)))
    row = await customer(db, "c-3")
    assert row is not None
    assert (row.purchase_days, row.total_spend, row.repeat_average_value) == (
        2,
        Decimal("80.0000"),
        30.0,
    )
    await handle(db, refunded("c-3", "p-b", "30.00", date(2026, 1, 22)))
    row = await customer(db, "c-3")
    assert row is not None
    assert (row.purchase_days, row.repeat_purchases, row.last_day) == (1, 0, D0)


def history(customer_id: str) -> list[Event]:
    days = (3, 9, 9, 20, 28)
    events: list[Event] = [
        bought(customer_id, date(2026, 1, d), f"{d}.00", purchase_id=f"{customer_id}-{i}")
        for i, d in enumerate(days)
    ]
    events.append(refunded(customer_id, f"{customer_id}-3", "5.00", date(2026, 2, 1)))
    return events


async def test_events_in_any_order_converge(db: Database) -> None:
    in_order = history("c-4")
    shuffled = history("c-5")[::-1]  # the refund comes before its purchase
    rest = shuffled[1:]
    random.Random(4).shuffle(rest)
    shuffled[1:] = rest
    assert isinstance(shuffled[0], PurchaseRefunded)
    await handle(db, *in_order)
    await handle(db, *shuffled, *shuffled[:3])  # and redelivered: no double counting
    rows = await customers(db)
    assert fields(rows["c-4"], *STATS) == fields(rows["c-5"], *STATS)
    assert rows["c-5"].total_spend == Decimal("64.0000")  # 3 + 9 + 9 + (20 - 5) + 28
    assert rows["c-5"].purchase_days == 4


async def test_a_merge_folds_purchases_and_an_erasure_deletes_them(db: Database) -> None:
    await handle(db, bought("keep", D0, "10.00"), bought("gone", date(2026, 1, 9), "20.00"))
    merge = CustomerMerged.create(
        subject="keep",
        source="keepwell/profile",
        data=CustomerMergedData(merge_id="m1", merged_id="gone"),
    )
    await handle(db, merge)
    rows = await customers(db)
    assert "gone" not in rows
    assert (rows["keep"].purchase_days, rows["keep"].total_spend) == (2, Decimal("30.0000"))
    erase = CustomerErased.create(
        subject="keep", source="keepwell/profile", data=CustomerErasedData()
    )
    await handle(db, erase)
    assert await customers(db) == {}
