"""The migration history builds exactly the tables the models describe."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from services.engagement.main import MIGRATIONS
from services.engagement.models import Base, Conversion, CountedPurchase, LastBasket, Outreach
from shared.db import Database
from shared.migrations import upgrade, upgrade_async
from shared.plumbing import plumbing_metadata
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, [Base.metadata, plumbing_metadata]))  # type: ignore[arg-type]


async def test_migrations_match_the_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_differences) == []


async def test_counted_purchases_start_with_the_sales_counted_before(
    database_url: DatabaseFactory,
) -> None:
    """The sales counted before ``counted_purchases`` existed are known by what they left:
    their thank-you (any status), their customer's latest basket, their conversion."""
    url = await database_url("engagement_backfill")
    await asyncio.to_thread(upgrade, MIGRATIONS, url, "2e9b0a2e3509")
    at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    database = Database(url)
    try:
        async with database.unit_of_work() as session:
            await session.execute(
                insert(Outreach),
                [
                    _outreach("o-1", "thank_you", "thank_you:/pos/store-7:p-1", at),
                    _outreach("o-2", "win_back", "win_back:c-a:1", at),
                ],
            )
            await session.execute(
                insert(LastBasket),
                [
                    {"customer_id": "c-a", "purchase_key": "/pos/store-7:p-1", "skus": [],
                     "purchased_at": at},
                    {"customer_id": "c-b", "purchase_key": "/web:p-2", "skus": ["x"],
                     "purchased_at": at},
                ],
            )  # fmt: skip
            await session.execute(
                insert(Conversion),
                [{"purchase_key": "/web:p-3", "outreach_id": "o-1", "customer_id": "c-b",
                  "purchased_at": at}],
            )  # fmt: skip
        await database.dispose()
        await upgrade_async(MIGRATIONS, url)
        async with database.unit_of_work() as session:
            rows = (await session.execute(select(CountedPurchase))).scalars().all()
            counted = sorted((r.purchase_key, r.purchased_at) for r in rows)
        assert counted == [
            ("/pos/store-7:p-1", at),
            ("/web:p-2", at),
            ("/web:p-3", at),
        ]
    finally:
        await database.dispose()


def _outreach(key: str, journey: str, dedupe_key: str, at: datetime) -> dict[str, Any]:
    return {
        "id": key, "customer_id": "c-a", "journey": journey, "channel": "email",
        "template": journey, "dedupe_key": dedupe_key, "status": "sent", "attempts": 1,
        "context": {}, "due_at": at, "created_at": at, "trigger_at": at,
    }  # fmt: skip
