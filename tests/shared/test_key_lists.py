"""shared.key_lists: a list of keys is one parameter, so a statement has one SQL text
whatever the list's length, and it finds the same rows ``IN`` would; ``ManyRows`` inserts
any number of rows with one SQL text on PostgreSQL and answers as the plain insert does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from shared.db import Database, UtcDateTime
from shared.key_lists import ManyRows, one_of
from tests.shared.statements import counting

metadata = MetaData()
items = Table(
    "key_list_items",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("n", Integer, nullable=False, unique=True),
)
ROWS = [{"code": f"k{i:04d}", "n": i} for i in range(300)]
stamps = Table(
    "many_rows_stamps",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("note", String(20), nullable=True),
    Column("made", Integer, nullable=False, server_default="7"),
)
STAMPS = ManyRows(stamps, ("code", "at", "note"), returning=(stamps.c.code,), conflict=("code",))
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
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


@pytest.mark.db
async def test_postgresql_never_tests_each_row_against_the_whole_list(
    items_db: Database,
) -> None:
    """Under a generic plan (what a statement prepared again and again settles on) a
    lookup by many keys is a join: no plan filters rows by ``= ANY`` of the list."""
    if items_db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plan")
    sql = str(BY_PARAM.compile(dialect=items_db.engine.dialect))
    keys = "{" + ",".join(str(row["code"]) for row in ROWS[::4]) + "}"
    async with items_db.engine.connect() as conn:
        await conn.exec_driver_sql("ANALYZE key_list_items")
        await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        await conn.exec_driver_sql(f"PREPARE by_keys (VARCHAR[]) AS {sql}")
        for table_scan in ("off", "on"):
            await conn.exec_driver_sql(f"SET enable_indexscan = {table_scan}")
            await conn.exec_driver_sql(f"SET enable_bitmapscan = {table_scan}")
            plan = (await conn.exec_driver_sql(f"EXPLAIN EXECUTE by_keys('{keys}')")).all()
            text = "\n".join(str(row[0]) for row in plan)
            assert "ANY" not in text, text
            found = (await conn.exec_driver_sql(f"EXECUTE by_keys('{keys}')")).scalars().all()
            assert found == [row["n"] for row in ROWS[::4]]
        await conn.rollback()


def test_the_sql_of_each_dialect() -> None:
    pg = str(BY_PARAM.compile(dialect=postgresql.asyncpg.dialect()))
    assert "key_list_items.code IN (SELECT unnest($1::VARCHAR[]))" in pg
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


def _stamp(i: int, note: str | None = None) -> dict[str, Any]:
    return {"code": f"s{i:04d}", "at": T0 + timedelta(minutes=i), "note": note}


async def _insert(db: Database, rows: list[dict[str, Any]]) -> set[str]:
    async with db.unit_of_work() as session:
        return {code for (code,) in await STAMPS.execute(session, rows)}


@pytest.mark.db
async def test_many_rows_returns_what_it_inserted_and_skips_what_was_there(
    items_db: Database,
) -> None:
    assert await _insert(items_db, [_stamp(1, "one"), _stamp(2)]) == {"s0001", "s0002"}
    # s0002 was there; s0003 is named twice in one statement: inserted once
    again = [_stamp(2, "changed"), _stamp(3, "first"), _stamp(3, "second")]
    assert await _insert(items_db, again) == {"s0003"}
    assert await _insert(items_db, []) == set()
    async with items_db.read_only() as session:
        rows = (await session.execute(select(stamps).order_by(stamps.c.code))).all()
    assert [(r.code, r.at, r.note, r.made) for r in rows] == [
        ("s0001", T0 + timedelta(minutes=1), "one", 7),  # server default for the column left out
        ("s0002", T0 + timedelta(minutes=2), None, 7),
        ("s0003", T0 + timedelta(minutes=3), "first", 7),
    ]


@pytest.mark.db
async def test_many_rows_keeps_times_exact_in_any_zone(items_db: Database) -> None:
    elsewhere = T0.astimezone(timezone(timedelta(hours=-5, minutes=-30)))
    await _insert(items_db, [{"code": "z", "at": elsewhere, "note": None}])
    async with items_db.read_only() as session:
        at = (await session.execute(select(stamps.c.at))).scalar_one()
    assert at == T0
    assert at.utcoffset() == timedelta(0)


@pytest.mark.db
async def test_many_rows_refuses_a_value_too_long_for_its_column(items_db: Database) -> None:
    if items_db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps strings of any length")
    too_long = {"code": "x" * 41, "at": T0, "note": None}
    with pytest.raises(Exception, match=r"(?i)too long"):
        await _insert(items_db, [_stamp(1), too_long])
    async with items_db.read_only() as session:
        # nothing of the failed statement stays, and nothing was cut to 40 characters
        assert (await session.execute(select(func.count()).select_from(stamps))).scalar() == 0


@pytest.mark.db
async def test_many_rows_one_sql_text_for_every_row_count_on_postgresql(
    items_db: Database,
) -> None:
    with counting(items_db) as seen:
        for start, count in ((0, 1), (10, 2), (20, 3), (100, 57)):
            rows = [_stamp(i) for i in range(start, start + count)]
            assert len(await _insert(items_db, rows)) == count
    sent = seen.on("many_rows_stamps")
    assert len(sent) == 4
    distinct = len(set(sent))
    if items_db.engine.dialect.name == "postgresql":
        assert distinct == 1, sent[0]
        assert "unnest" in sent[0]
    else:
        assert distinct > 1  # SQLite: the plain insert, one VALUES list per row count


def test_many_rows_sql_on_postgresql() -> None:
    stmt = STAMPS._statement("postgresql")
    sql = str(stmt.compile(dialect=postgresql.asyncpg.dialect()))
    # strings as VARCHAR[] without the column's length: the insert's own cast checks it
    assert "unnest($1::VARCHAR[])" in sql, sql
    assert "unnest($2::TIMESTAMP WITH TIME ZONE[])" in sql, sql
    assert "ON CONFLICT (code) DO NOTHING RETURNING many_rows_stamps.code" in sql, sql
