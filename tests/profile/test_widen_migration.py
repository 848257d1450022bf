"""Widening ``customers`` columns in place (``shared.migrations.widen_strings``) keeps every
row, the customers' and those of the tables that reference them ON DELETE CASCADE: on
SQLite a batch copy of the table would drop it, and the drop would delete those rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import func, insert, select, update

from services.profile.main import MIGRATIONS
from services.profile.models import Consent, Customer, Identity
from shared.db import Database
from shared.migrations import alembic_config, upgrade
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

BEFORE = "e97fd39aeb4d"  # the revision before the widening
AT = datetime(2026, 12, 1, tzinfo=UTC)


async def _counts(database: Database) -> tuple[int, int, int]:
    async with database.unit_of_work() as session:
        found = [
            (await session.execute(select(func.count()).select_from(m))).scalar_one()
            for m in (Customer, Consent, Identity)
        ]
    return found[0], found[1], found[2]


async def test_widening_keeps_customers_and_what_references_them(
    database_url: DatabaseFactory,
) -> None:
    url = await database_url("profile_widen")
    await asyncio.to_thread(upgrade, MIGRATIONS, url, BEFORE)
    database = Database(url)
    try:
        async with database.unit_of_work() as session:
            await session.execute(
                insert(Customer).values(
                    customer_id="c-1", name="Lan", name_folded="lan", tier="Gold",
                    order_count=0, gross_spend=0, refunded_spend=0, open_complaints=0,
                )
            )  # fmt: skip
            await session.execute(
                insert(Consent).values(
                    customer_id="c-1", channel="email", status="opt_in", source="pos", changed_at=AT
                )
            )
            await session.execute(
                insert(Identity).values(
                    kind="email", value="lan@example.com", customer_id="c-1", origin_id="c-1",
                    created_at=AT,
                )
            )  # fmt: skip
        await database.dispose()

        await asyncio.to_thread(upgrade, MIGRATIONS, url)

        assert await _counts(database) == (1, 1, 1)
        if database.engine.dialect.name == "sqlite":  # the edited schema reads back sound
            async with database.engine.connect() as conn:
                check = await conn.exec_driver_sql("PRAGMA integrity_check")
                assert check.scalar_one() == "ok"
        tier, folded = "T" * 64, "ffi" * 200
        async with database.unit_of_work() as session:
            await session.execute(update(Customer).values(tier=tier, name_folded=folded))
        async with database.unit_of_work() as session:
            row = (await session.execute(select(Customer.tier, Customer.name_folded))).one()
        assert tuple(row) == (tier, folded)
        await database.dispose()

        # and back down, once no value is longer than the old widths
        async with database.unit_of_work() as session:
            await session.execute(update(Customer).values(tier="Gold", name_folded="lan"))
        await database.dispose()
        await asyncio.to_thread(_downgrade, url, BEFORE)
        assert await _counts(database) == (1, 1, 1)
    finally:
        await database.dispose()


def _downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(MIGRATIONS, url), revision)
