"""The migration that adds the rollups fills them from the purchases already recorded,
exactly as the service would have kept them."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select

from services.engagement.churn import months as rollups
from services.engagement.churn.models import (
    ChurnCohortMonth,
    ChurnCustomer,
    ChurnCustomerCohort,
    ChurnCustomerMonth,
    ChurnMonthBuyers,
    ChurnPurchase,
)
from services.engagement.main import MIGRATIONS
from shared.db import Database
from shared.migrations import upgrade
from tests.conftest import DatabaseFactory
from tests.engagement.reports.support import history

pytestmark = pytest.mark.db
BEFORE = "6e605782a9d5"  # the revision before the rollups


Snapshot = tuple[list[tuple[object, ...]], ...]


async def snapshot(db: Database) -> Snapshot:
    async with db.unit_of_work() as session:
        t = ChurnCohortMonth
        cohorts = (
            await session.execute(
                select(t.cohort, t.month, func.sum(t.active), func.sum(t.retained))
                .group_by(t.cohort, t.month)
                .order_by(t.cohort, t.month)
            )
        ).all()
        m = ChurnCustomerMonth
        customer_months = (
            await session.execute(
                select(
                    m.customer_id,
                    m.month,
                    m.purchases,
                    m.revenue,
                    m.currency,
                    m.cohort,
                    m.prev_active,
                ).order_by(m.customer_id, m.month)
            )
        ).all()
        c = ChurnCustomerCohort
        firsts = (
            await session.execute(select(c.customer_id, c.cohort, c.second).order_by(c.customer_id))
        ).all()
        b = ChurnMonthBuyers
        total = func.sum(b.customers)
        buyers = (
            await session.execute(
                select(
                    b.month, b.since, b.currency, total, func.sum(b.purchases), func.sum(b.revenue)
                )
                .group_by(b.month, b.since, b.currency)
                .having(total != 0)
                .order_by(b.month, b.since, b.currency)
            )
        ).all()
    return tuple([tuple(r) for r in rows] for rows in (cohorts, customer_months, firsts, buyers))


async def test_backfill_equals_the_rollups_the_service_keeps(database_url: DatabaseFactory) -> None:
    rows = history(customers=30)
    purchases = [
        {
            "purchase_id": r.purchase_id,
            "customer_id": r.customer_id,
            "day": r.at.date(),
            "occurred_at": r.at,
            "amount": r.amount,
            "currency": "EUR",
            "refunded": r.refunded,
        }
        for r in rows
    ]
    customers = [
        {"customer_id": c, "currency": "EUR"} for c in sorted({r.customer_id for r in rows})
    ]
    backfilled, kept = await database_url("engagement"), await database_url("engagement")
    await asyncio.to_thread(upgrade, MIGRATIONS, backfilled, BEFORE)
    await asyncio.to_thread(upgrade, MIGRATIONS, kept)
    for url in (backfilled, kept):
        db = Database(url)
        async with db.unit_of_work() as session:
            await session.execute(insert(ChurnPurchase), purchases)
            await session.execute(
                insert(ChurnCustomer),
                [
                    {
                        **c,
                        "purchase_days": 0,
                        "repeat_purchases": 0,
                        "total_spend": Decimal(0),
                        "repeat_average_value": 0.0,
                        "gap_count": 0,
                        "open_complaints": 0,
                        "reasons": [],
                    }
                    for c in customers
                ],
            )
        await db.dispose()
    await asyncio.to_thread(upgrade, MIGRATIONS, backfilled)
    db = Database(kept)
    async with db.unit_of_work() as session:
        for c in customers:
            found = await session.scalars(
                select(ChurnPurchase).where(ChurnPurchase.customer_id == c["customer_id"])
            )
            await rollups.refresh_months(session, c["customer_id"], found.all())
    expected = await snapshot(db)
    await db.dispose()
    db = Database(backfilled)
    got = await snapshot(db)
    await db.dispose()
    assert got == expected
    assert len(expected[1]) >= 50  # customer-months: a real history, not an empty one
    assert expected[3]  # month buyers
