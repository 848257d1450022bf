"""shared.executemany: on PostgreSQL an executemany of an INSERT or UPDATE runs as one
statement over arrays, and leaves the database as the rows one after another would; the
shapes it cannot run that way are executed row by row, as before."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    event,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared import outbox
from shared.db import Database, UtcDateTime
from shared.executemany import plan_for
from shared.plumbing import outbox as outbox_table
from tests.helpers import purchase

# --- Which statements run as arrays (no database) ---

INSERT = (
    "INSERT INTO t (a, b, c) VALUES ($1::VARCHAR, $2::NUMERIC(18, 4), $3::TIMESTAMP WITH TIME ZONE)"
)


def test_an_insert_takes_each_column_as_an_array_in_the_given_order() -> None:
    plan = plan_for(INSERT)
    assert plan is not None
    assert plan.sql == (
        "INSERT INTO t (a, b, c) SELECT _rows.p1, _rows.p2, _rows.p3 FROM "
        "unnest($1::VARCHAR[], $2::NUMERIC(18, 4)[], $3::TIMESTAMP WITH TIME ZONE[]) "
        "WITH ORDINALITY AS _rows(p1, p2, p3, _ord) ORDER BY _rows._ord"
    )
    assert (plan.width, plan.unique) == (3, ())


def test_an_upsert_keeps_its_conflict_clause_and_checks_its_key() -> None:
    plan = plan_for(
        "INSERT INTO t (a, b, c) VALUES ($1::VARCHAR, $2::INTEGER, $3::INTEGER) "
        "ON CONFLICT (c, a) DO UPDATE SET b = (t.b + excluded.b)"
    )
    assert plan is not None
    assert plan.sql.endswith(
        "ORDER BY _rows._ord ON CONFLICT (c, a) DO UPDATE SET b = (t.b + excluded.b)"
    )
    assert plan.unique == (2, 0)
    nothing = plan_for(INSERT + " ON CONFLICT (a) DO NOTHING")
    assert nothing is not None
    assert nothing.unique == ()


def test_an_update_joins_the_arrays_and_checks_what_its_where_compares() -> None:
    plan = plan_for(
        "UPDATE t SET a=$1::VARCHAR, b=(t.b + $2::INTEGER) WHERE t.id = $3::BIGINT "
        "AND t.version = $4::INTEGER"
    )
    assert plan is not None
    assert plan.sql == (
        "UPDATE t SET a=_rows.p1, b=(t.b + _rows.p2) FROM unnest($1::VARCHAR[], "
        "$2::INTEGER[], $3::BIGINT[], $4::INTEGER[]) AS _rows(p1, p2, p3, p4) "
        "WHERE t.id = _rows.p3 AND t.version = _rows.p4"
    )
    assert plan.unique == (2, 3)


@pytest.mark.parametrize(
    "statement",
    [
        INSERT + " RETURNING t.a",
        "INSERT INTO t (a, b) VALUES ($1::VARCHAR, $2)",  # no cast: no array type
        "INSERT INTO t (a, b) VALUES ($1::VARCHAR, $2::VARCHAR[])",  # unnest flattens
        "INSERT INTO t (a, b) VALUES ($1::VARCHAR, $2::INTEGER) ON CONFLICT ON CONSTRAINT "
        "uq DO UPDATE SET b = excluded.b",  # key unknown
        "INSERT INTO t (a, b) VALUES ($1::VARCHAR, now()) ON CONFLICT (b) DO UPDATE "
        "SET a = excluded.a",  # key not bound
        "INSERT INTO t (a, b) SELECT $1::VARCHAR, $2::INTEGER",
        "UPDATE t SET a=$1::VARCHAR WHERE t.b < $2::INTEGER",  # two rows could hit one
        "UPDATE t SET a=$1::VARCHAR WHERE t.b = $2::INTEGER OR t.c = $3::INTEGER",
        "UPDATE t SET a=$1::VARCHAR FROM u WHERE t.b = $2::INTEGER",
        "UPDATE t SET a=(SELECT max(u.a) FROM u) WHERE t.b = $1::INTEGER",
        "UPDATE t SET a=$1::VARCHAR",
        "DELETE FROM t WHERE t.a = $1::VARCHAR",
    ],
)
def test_other_shapes_are_left_row_by_row(statement: str) -> None:
    assert plan_for(statement) is None


# --- What it does to a database (PostgreSQL only) ---

metadata = MetaData()
things = Table(
    "executemany_things",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("code", String(20), nullable=False, unique=True),
    Column("blob", LargeBinary, nullable=True),
    Column("doc", JSON, nullable=True),
    Column("amount", Numeric(18, 4), nullable=True),
    Column("at", UtcDateTime(), nullable=True),
    Column("hits", Integer, nullable=False, server_default="0"),
)
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = metadata


class Counter(Base):
    __tablename__ = "executemany_counters"
    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    count: Mapped[int]
    note: Mapped[str | None] = mapped_column(String(40))


@pytest.fixture
async def pg(db: Database) -> Database:
    if db.sqlite:
        pytest.skip("arrays are PostgreSQL's; SQLite's executemany is in-process")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return db


@contextmanager
def row_by_row(db: Database) -> Iterator[list[int]]:
    """The number of rows of each executemany the driver ran one by one: a listener after
    the array form's runs only when that one left the statement alone."""
    sizes: list[int] = []

    def seen(_cursor: Any, _sql: str, parameters: Any, _context: Any) -> None:
        sizes.append(len(parameters))

    event.listen(db.engine.sync_engine, "do_executemany", seen)
    try:
        yield sizes
    finally:
        event.remove(db.engine.sync_engine, "do_executemany", seen)


def _thing(i: int) -> dict[str, Any]:
    return {
        "code": f"c{i:03d}",
        "blob": bytes([i, 0, 255]) if i % 3 else None,
        "doc": {"i": i, "tags": ["a", i]} if i % 2 else None,
        "amount": Decimal(i) / 8 if i % 5 else None,
        "at": T0 + timedelta(seconds=i) if i % 7 else None,
    }


async def _all(db: Database) -> list[Any]:
    async with db.read_only() as session:
        return list((await session.execute(select(things).order_by(things.c.id))).all())


@pytest.mark.db
async def test_rows_go_in_once_each_in_order_with_their_values(pg: Database) -> None:
    rows = [_thing(i) for i in range(40, 0, -1)]
    with row_by_row(pg) as one_by_one:
        async with pg.unit_of_work() as session:
            await session.execute(things.insert(), rows)
    assert one_by_one == []
    stored = await _all(pg)
    assert [r.code for r in stored] == [r["code"] for r in rows]  # ids in the given order
    for row, got in zip(rows, stored, strict=True):
        assert (got.blob, got.doc, got.amount, got.at) == (
            row["blob"],
            row["doc"],
            row["amount"],
            row["at"],
        )


@pytest.mark.db
async def test_the_outbox_publishes_in_the_order_events_were_enqueued(pg: Database) -> None:
    events = [purchase(f"cust-{i % 4}", amount=str(i + 1)) for i in range(25)]
    with row_by_row(pg) as one_by_one:
        async with pg.unit_of_work() as session:
            outbox.defer(session)
            for e in events:
                await outbox.enqueue(session, e)
    assert one_by_one == []
    async with pg.read_only() as session:
        values = (
            await session.execute(select(outbox_table.c.value).order_by(outbox_table.c.id))
        ).scalars()
        assert list(values) == [e.to_json() for e in events]


@pytest.mark.db
async def test_a_value_too_long_or_a_repeated_key_is_refused_as_row_by_row(
    pg: Database,
) -> None:
    with pytest.raises(DBAPIError, match="too long"):
        async with pg.unit_of_work() as session:
            await session.execute(things.insert(), [_thing(1), {**_thing(2), "code": "x" * 21}])
    with pytest.raises(IntegrityError):
        async with pg.unit_of_work() as session:
            await session.execute(things.insert(), [_thing(1), _thing(2), _thing(1)])
    assert await _all(pg) == []


@pytest.mark.db
async def test_upserts_add_up_as_one_at_a_time_and_repeated_keys_go_row_by_row(
    pg: Database,
) -> None:
    async with pg.unit_of_work() as session:
        await session.execute(things.insert(), [_thing(1), _thing(2)])
    upsert = pg_insert(things)
    upsert = upsert.on_conflict_do_update(
        index_elements=["code"], set_={"hits": things.c.hits + upsert.excluded.hits}
    )
    with row_by_row(pg) as one_by_one:
        async with pg.unit_of_work() as session:
            distinct = [{"code": c, "hits": h} for c, h in (("c001", 2), ("c002", 3), ("c003", 4))]
            await session.execute(upsert, distinct)
            repeated = [
                {"code": c, "hits": h} for c, h in (("c001", 10), ("c004", 1), ("c001", 20))
            ]
            await session.execute(upsert, repeated)
    assert one_by_one == [3]  # the second: c001 twice in one statement would be refused
    hits = {r.code: r.hits for r in await _all(pg)}
    assert hits == {"c001": 32, "c002": 3, "c003": 4, "c004": 1}

    nothing = pg_insert(things).on_conflict_do_nothing()
    with row_by_row(pg) as one_by_one:
        async with pg.unit_of_work() as session:
            await session.execute(nothing, [_thing(5), _thing(1), _thing(5), _thing(6)])
    assert one_by_one == []
    assert [r.code for r in await _all(pg)] == ["c001", "c002", "c003", "c004", "c005", "c006"]


@pytest.mark.db
async def test_updates_by_key_and_the_orm_flush(pg: Database) -> None:
    async with pg.unit_of_work() as session:
        session.add_all(Counter(name=f"n{i}", count=i) for i in range(6))
    with row_by_row(pg) as one_by_one:
        async with pg.unit_of_work() as session:
            counters = (await session.execute(select(Counter).order_by(Counter.name))).scalars()
            for counter in counters:
                counter.count += 100
                counter.note = f"seen {counter.name}"
        table = metadata.tables["executemany_counters"]
        by_code = (
            update(table)
            .where(table.c.name == bindparam("key"))
            .values(count=table.c.count + bindparam("more"))
        )
        async with pg.unit_of_work() as session:
            await session.execute(by_code, [{"key": "n1", "more": 5}, {"key": "n2", "more": 7}])
            await session.execute(by_code, [{"key": "n3", "more": 5}, {"key": "n3", "more": 7}])
    assert one_by_one == [2]  # n3 twice: one join cannot update a row twice
    async with pg.read_only() as session:
        rows = (await session.execute(select(Counter).order_by(Counter.name))).scalars()
        got = {c.name: (c.count, c.note) for c in rows}
    assert got == {
        f"n{i}": (100 + i + {1: 5, 2: 7, 3: 12}.get(i, 0), f"seen n{i}") for i in range(6)
    }
