"""The connection pools: what a checkout and a return cost, and what they still guard."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from shared.db import Database
from tests.conftest import TEST_DB, DatabaseFactory

pytestmark = pytest.mark.db


@pytest.mark.skipif(TEST_DB != "postgres", reason="PostgreSQL's pool")
async def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(
    database_url: DatabaseFactory,
) -> None:
    url = await database_url("pool")
    db = Database(url)
    admin = create_async_engine(url, poolclass=NullPool)
    try:
        async with db.read_only() as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with admin.connect() as conn:
            # waits (up to 5 s) until the backend has gone, as a server restart would
            ended = await conn.execute(
                text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}
            )
            assert ended.scalar_one() is True
        async with db.unit_of_work() as session:
            again = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert again != pid
    finally:
        await admin.dispose()
        await db.dispose()


@pytest.mark.skipif(TEST_DB != "sqlite", reason="SQLite's pool")
async def test_sqlite_rolls_back_on_return_only_a_transaction_left_open(
    database_url: DatabaseFactory,
) -> None:
    db = Database(await database_url("pool"))
    try:
        async with db.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
        rollbacks: list[bool] = []
        real_rollback = driver.rollback

        async def counted() -> Any:
            rollbacks.append(True)
            return await real_rollback()

        driver.rollback = counted
        async with db.unit_of_work() as session:
            await session.execute(text("CREATE TABLE t (x INTEGER)"))
        async with db.read_only() as session:
            await session.execute(text("SELECT x FROM t"))
        assert rollbacks == []  # both committed: nothing to roll back
        async with db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            same = raw.driver_connection is driver  # the pool's one connection, again
            adapted: Any = raw.dbapi_connection
            await conn.run_sync(lambda _: adapted.execute("BEGIN IMMEDIATE"))
            assert driver.in_transaction
        assert rollbacks == [True]
        assert not driver.in_transaction
        assert same
        async with db.unit_of_work() as session:  # the connection (and the lock) is free
            await session.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        await db.dispose()
