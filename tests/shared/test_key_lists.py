"""shared.key_lists: a list of keys is one parameter, so a statement has one SQL text
whatever the list's length, and it finds the same rows ``IN`` would."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from shared.db import Database
from shared.key_lists import one_of
from tests.shared.statements import counting

metadata = MetaData()
items = Table(
    "key_list_items",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("n", Integer, nullable=False, unique=True),
)
ROWS = [{"code": f"k{i:04d}", "n": i} for i in range(300)]
BY_PARAM = select(items.c.n).where(one_of(items.c.code, param="keys")).order_by(items.c.n)


@pytest.fixture
async def items_db(db: Database) -> Database:
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(items.insert(), ROWS)
    return db


async def _ns(db: Database, stmt: Any, params: dict[str, Any] | None = None) -> list[int]:
    async with db.read_only() as session:
        return list((await session.execute(stmt, params)).scalars())


@pytest.mark.db
@pytest.mark.parametrize(
    "keys",
    [
        [],
        ["k0007"],
        ["k0003", "k0001", "k0003", "missing"],  # order, repeats and unknown keys
        [f"k{i:04d}" for i in range(0, 300, 2)],
    ],
)
async def test_finds_what_in_finds(items_db: Database, keys: list[str]) -> None:
    expected = await _ns(items_db, select(items.c.n).where(items.c.code.in_(keys)).order_by("n"))
    stmt = select(items.c.n).where(one_of(items.c.code, keys)).order_by(items.c.n)
    assert await _ns(items_db, stmt) == expected
    assert await _ns(items_db, BY_PARAM, {"keys": keys}) == expected
    assert len(expected) == len({k for k in keys if k != "missing"})


@pytest.mark.db
async def test_a_key_longer_than_the_column_matches_nothing(items_db: Database) -> None:
    too_long = "k0001" + "x" * 40  # its first 40 characters are no key either
    prefix_of_a_key = "k0001".ljust(40, "x")[:40]
    async with items_db.unit_of_work() as session:
        await session.execute(items.insert(), [{"code": prefix_of_a_key, "n": 1000}])
    assert await _ns(items_db, BY_PARAM, {"keys": [too_long]}) == []


@pytest.mark.db
async def test_integer_keys_sets_and_negation(items_db: Database) -> None:
    assert await _ns(items_db, select(items.c.n).where(one_of(items.c.n, {5, 2, 999}))) == [2, 5]
    outside = select(items.c.n).where(~one_of(items.c.n, range(2, 300))).order_by(items.c.n)
    assert await _ns(items_db, outside) == [0, 1]


@pytest.mark.db
async def test_one_sql_text_for_every_list_length(items_db: Database) -> None:
    with counting(items_db) as seen:
        for length in (1, 2, 3, 50, 299):
            keys = [row["code"] for row in ROWS[:length]]
            assert len(await _ns(items_db, BY_PARAM, {"keys": keys})) == length
    sent = seen.on("key_list_items")
    assert len(sent) == 5
    assert len(set(sent)) == 1


@pytest.mark.db
async def test_deletes_by_a_key_list(items_db: Database) -> None:
    async with items_db.unit_of_work() as session:
        gone = await session.execute(delete(items).where(one_of(items.c.code, ["k0001", "k0002"])))
    assert gone.rowcount == 2  # type: ignore[attr-defined]
    assert await _ns(items_db, select(items.c.n).where(items.c.n < 4).order_by("n")) == [0, 3]


@pytest.mark.db
async def test_sqlite_looks_the_keys_up_in_the_index(items_db: Database) -> None:
    if items_db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's plan")
    sql = str(BY_PARAM.compile(dialect=items_db.engine.dialect))
    async with items_db.engine.connect() as conn:
        plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", ('["k0001"]',))).all()
    details = " ".join(str(row[-1]) for row in plan)
    assert "USING INDEX" in details, details
    assert "SCAN key_list_items" not in details, details


def test_the_sql_of_each_dialect() -> None:
    pg = str(BY_PARAM.compile(dialect=postgresql.asyncpg.dialect()))
    assert "key_list_items.code = ANY ($1::VARCHAR[])" in pg
    lite = str(BY_PARAM.compile(dialect=sqlite.aiosqlite.dialect()))
    # no "= 1" after the comparison, which would keep SQLite off the index
    assert lite.rstrip().endswith(
        "WHERE key_list_items.code IN (SELECT value FROM json_each(?)) ORDER BY key_list_items.n"
    ), lite


def test_the_values_or_a_parameter_name_but_not_both() -> None:
    with pytest.raises(TypeError, match="not both"):
        one_of(items.c.code, ["a"], param="keys")
    with pytest.raises(TypeError, match="not both"):
        one_of(items.c.code)
    with pytest.raises(TypeError, match="typed column"):
        one_of("key", ["a"])


@pytest.mark.db
async def test_null_for_the_list_is_refused(items_db: Database) -> None:
    with pytest.raises(Exception, match="not NULL"):
        await _ns(items_db, BY_PARAM, {"keys": None})
