"""The migration that adds the report's rollups fills them from the existing history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from services.loyalty.main import MIGRATIONS
from shared.db import Database
from shared.migrations import upgrade
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

BEFORE_ROLLUPS = "cf94375133ab"
ENTRIES = [  # customer, kind, points, occurred_at (the last one is 1 March in UTC)
    ("a", "earn", 100, "2025-02-27 10:00:00+00:00"),
    ("a", "redeem", -40, "2025-02-27 18:00:00+00:00"),
    ("b", "earn", 7, "2025-02-28 23:30:00-05:00"),
]


async def test_existing_history_is_rolled_up_by_utc_day(database_url: DatabaseFactory) -> None:
    url = await database_url("loyalty")
    await asyncio.to_thread(upgrade, MIGRATIONS, url, BEFORE_ROLLUPS)
    db = Database(url)
    try:
        async with db.unit_of_work() as session:
            for n, (customer, kind, points, when) in enumerate(ENTRIES):
                await session.execute(
                    text(
                        "INSERT INTO ledger_entries (customer_id, kind, points, balance_after,"
                        " reason, entry_key, occurred_at) VALUES (:c, :k, :p, 0, 'old', :key, :t)"
                    ),
                    {"c": customer, "k": kind, "p": points, "key": f"k{n}", "t": _at(when)},
                )
            await session.execute(
                text(
                    "INSERT INTO purchases (purchase_id, customer_id, occurred_at, total, currency,"
                    " points, reversed_points, refunded_exact, unit_points)"
                    " VALUES ('p1', 'b', :t, 7.5, 'EUR', 7, 0, 0, '{}')"
                ),
                {"t": _at(ENTRIES[2][3])},
            )
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        async with db.unit_of_work() as session:
            daily = (
                await session.execute(
                    text("SELECT day, kind, points FROM daily_points ORDER BY day, kind")
                )
            ).all()
            revenue = (
                await session.execute(text("SELECT day, tier, orders, revenue FROM daily_revenue"))
            ).all()
    finally:
        await db.dispose()
    assert [(str(d), k, p) for d, k, p in daily] == [
        ("2025-02-27", "earn", 100),
        ("2025-02-27", "redeem", -40),
        ("2025-03-01", "earn", 7),
    ]
    assert [(str(d), t, n, float(r)) for d, t, n, r in revenue] == [("2025-03-01", "", 1, 7.5)]


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)
