"""shared.claims: a key is claimed once, whichever transaction, chunk or row names it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, select, text

from shared import claims
from shared.claims import KeyClaims
from shared.db import Database
from tests.shared.statements import counting

pytestmark = pytest.mark.db

metadata = MetaData()
sales = Table(
    "claimed_sales",
    metadata,
    Column("source", String(40), primary_key=True),
    Column("sale_id", String(40), primary_key=True),
    Column("note", String(40)),
)
SALES: KeyClaims[tuple[str, str]] = KeyClaims(sales)


@pytest.fixture
async def sales_db(db: Database) -> Database:
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return db


def _row(source: str, sale_id: str, note: str = "") -> dict[str, Any]:
    return {"source": source, "sale_id": sale_id, "note": note}


async def _claim(db: Database, *rows: dict[str, Any]) -> set[tuple[str, str]]:
    async with db.unit_of_work() as session:
        return await SALES.claim(session, rows)


async def _stored(db: Database) -> list[tuple[str, str, str]]:
    async with db.unit_of_work() as session:
        found = await session.execute(select(sales.c.source, sales.c.sale_id, sales.c.note))
        return sorted((s, i, n) for s, i, n in found.all())


async def test_only_keys_not_recorded_before_are_claimed(sales_db: Database) -> None:
    assert await _claim(sales_db, _row("/a", "1", "first"), _row("/b", "1")) == {
        ("/a", "1"),
        ("/b", "1"),
    }
    again = await _claim(sales_db, _row("/a", "1", "again"), _row("/a", "2", "new"))
    assert again == {("/a", "2")}
    assert await _claim(sales_db, _row("/a", "1"), _row("/b", "1")) == set()
    # a recorded key keeps the row that claimed it
    assert await _stored(sales_db) == [("/a", "1", "first"), ("/a", "2", "new"), ("/b", "1", "")]


async def test_a_key_named_twice_in_one_claim_is_claimed_with_its_first_row(
    sales_db: Database,
) -> None:
    assert await _claim(sales_db, _row("/a", "1", "one"), _row("/a", "1", "two")) == {("/a", "1")}
    assert await _stored(sales_db) == [("/a", "1", "one")]


async def test_nothing_to_claim_sends_no_statement(sales_db: Database) -> None:
    with counting(sales_db) as seen:
        assert await _claim(sales_db) == set()
    assert seen.on("claimed_sales") == []


async def test_rows_go_in_chunks_and_every_chunk_counts(
    sales_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claims, "CHUNK", 2)
    await _claim(sales_db, _row("/a", "3"))
    rows = [_row("/a", str(n)) for n in (5, 1, 4, 3, 2)]
    with counting(sales_db) as seen:
        claimed = await _claim(sales_db, *rows)
    assert claimed == {("/a", "1"), ("/a", "2"), ("/a", "4"), ("/a", "5")}
    assert sum(sql.startswith("INSERT INTO claimed_sales") for sql in seen.sql) == 3


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_a_key_another_transaction_holds_waits_for_its_outcome(
    sales_db: Database, outcome: str
) -> None:
    """The second claim of a key waits for the first transaction: it gets the key only if
    that one rolls back (PostgreSQL: the row lock; SQLite: one writer at a time)."""
    first_claimed, release = asyncio.Event(), asyncio.Event()
    held: set[tuple[str, str]] = set()

    async def first() -> None:
        async with sales_db.unit_of_work() as session:
            held.update(await SALES.claim(session, [_row("/a", "1", "first")]))
            first_claimed.set()
            await release.wait()
            if outcome == "rollback":
                raise _RolledBack

    holder = asyncio.create_task(first())
    await first_claimed.wait()
    second = asyncio.create_task(_claim(sales_db, _row("/a", "1", "second")))
    await _until_waiting(sales_db)
    release.set()
    if outcome == "rollback":
        with pytest.raises(_RolledBack):
            await holder
    else:
        await holder
    assert held == {("/a", "1")}
    assert await second == ({("/a", "1")} if outcome == "rollback" else set())
    note = "second" if outcome == "rollback" else "first"
    assert await _stored(sales_db) == [("/a", "1", note)]


async def _until_waiting(db: Database) -> None:
    """Until the second claim waits: on PostgreSQL for the first one's row lock (its
    INSERT is running); on SQLite its unit of work waits for the writer's turn."""
    if db.sqlite:
        for _ in range(10):
            await asyncio.sleep(0)
        return
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO claimed_sales%'"
    )
    for _ in range(3000):
        async with db.read_engine.connect() as conn:
            if (await conn.execute(waiting)).scalar_one():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the second claim never waited for the first")


class _RolledBack(Exception):
    pass
