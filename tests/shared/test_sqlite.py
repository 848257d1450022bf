"""shared.sqlite: each statement is one hand-off to aiosqlite's thread, none on a quick
read's connection (the event loop's thread); errors as before."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import MetaData, String, event, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.consumer import is_transient
from shared.db import Database, ReadOnlyViolation, create_engine
from tests.conftest import TEST_DB, DatabaseFactory

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(TEST_DB != "sqlite", reason="aiosqlite's thread: SQLite only"),
]

fx_metadata = MetaData()


class Base(DeclarativeBase):
    metadata = fx_metadata


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await database_url("hops"))
    async with database.engine.begin() as conn:
        await conn.run_sync(fx_metadata.create_all)
    async with database.unit_of_work() as s:  # the pool holds an open connection
        await s.execute(insert(Tag), [{"name": "a"}, {"name": "b"}])
    async with database.read_only() as s:
        await s.execute(select(Tag.id))
    async with database.read_only(quick=True) as s:
        await s.execute(select(Tag.id))
    yield database
    await database.dispose()


class HandOffs:
    """Counts calls handed to aiosqlite connections' worker threads."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> HandOffs:
    counter = HandOffs()
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counter.count += 1
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return counter


async def test_a_select_is_one_hand_off(db: Database, hand_offs: HandOffs) -> None:
    async with db.unit_of_work() as s:
        await s.connection()  # BEGIN IMMEDIATE
        before = hand_offs.count
        names = (await s.execute(select(Tag.name).order_by(Tag.id))).scalars().all()
        assert hand_offs.count - before == 1
    assert names == ["a", "b"]
    assert hand_offs.count == 3  # BEGIN IMMEDIATE, SELECT, COMMIT


async def test_an_insert_returning_is_one_hand_off(db: Database, hand_offs: HandOffs) -> None:
    async with db.unit_of_work() as s:
        await s.connection()
        before = hand_offs.count
        new_id = (await s.execute(insert(Tag).values(name="c").returning(Tag.id))).scalar_one()
        assert hand_offs.count - before == 1
    assert new_id == 3
    assert hand_offs.count == 3


async def test_a_read_only_unit_of_work_is_one_hand_off_a_statement(
    db: Database, hand_offs: HandOffs
) -> None:
    async with db.read_only() as s:
        tag = await s.get(Tag, 2)
        assert tag is not None
        assert tag.name == "b"
        count = len((await s.execute(select(Tag))).scalars().all())
    assert count == 2
    assert hand_offs.count == 4  # BEGIN, two SELECTs, COMMIT


async def test_row_counts_and_many_rows(db: Database) -> None:
    async with db.unit_of_work() as s:
        await s.execute(insert(Tag), [{"name": f"n{i}"} for i in range(50)])
        result = await s.execute(update(Tag).where(Tag.name.like("n%")).values(name=Tag.name + "!"))
        assert result.rowcount == 50  # type: ignore[attr-defined]
        rows = (await s.execute(select(Tag.id, Tag.name).order_by(Tag.id))).all()
    assert len(rows) == 52
    assert rows[-1] == (52, "n49!")


async def test_a_streamed_result_still_works(db: Database) -> None:
    """stream() asks for a server-side cursor: SQLAlchemy's own, fetched in steps."""
    async with db.read_only() as s:
        result = await s.stream(select(Tag.name).order_by(Tag.id))
        assert [name async for name in result.scalars()] == ["a", "b"]


async def test_a_constraint_violation_is_an_integrity_error(db: Database) -> None:
    with pytest.raises(sa_exc.IntegrityError) as caught:
        async with db.unit_of_work() as s:
            await s.execute(insert(Tag).values(name="a"))
    assert isinstance(caught.value.orig, sqlite3.IntegrityError)
    assert not is_transient(caught.value)
    async with db.unit_of_work() as s:  # the connection is fine afterwards
        await s.execute(insert(Tag).values(name="c"))


async def test_a_locked_database_is_a_transient_operational_error(db: Database) -> None:
    engine = create_engine(db.url)

    @event.listens_for(engine.sync_engine, "connect")
    def _no_waiting(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    path = make_url(db.url).database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sa_exc.OperationalError) as caught:
            async with engine.begin() as conn:
                await conn.execute(insert(Tag).values(name="c"))
        assert "database is locked" in str(caught.value.orig)
        assert is_transient(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()


async def test_a_quick_read_hands_nothing_to_aiosqlites_thread(
    db: Database, hand_offs: HandOffs
) -> None:
    async with db.read_only(quick=True) as s:
        tag = await s.get(Tag, 2)
        assert tag is not None
        assert tag.name == "b"
        names = (await s.execute(select(Tag.name).order_by(Tag.id))).scalars().all()
    assert names == ["a", "b"]
    assert hand_offs.count == 0  # BEGIN, two SELECTs and COMMIT on the loop's thread
    async with db.read_only() as s:  # the other read-only units of work still hand off
        await s.get(Tag, 1)
    assert hand_offs.count == 3


async def test_a_quick_read_cannot_write(db: Database) -> None:
    with pytest.raises(ReadOnlyViolation):
        async with db.read_only(quick=True) as s:
            await s.execute(insert(Tag).values(name="c"))
    async with db.read_only() as s:
        assert len((await s.execute(select(Tag))).scalars().all()) == 2


async def test_a_quick_read_that_meets_a_lock_waits_on_aiosqlites_thread(
    database_url: DatabaseFactory, hand_offs: HandOffs
) -> None:
    """A connection holding the database in exclusive mode keeps new readers out, even in
    WAL mode. The quick read's connection, opened meanwhile, waits for it on aiosqlite's
    thread: the event loop goes on (the ticker ticks), and the read succeeds once the
    lock is gone. Waiting in the busy handler on the loop's thread would stop the ticker;
    with no wait at all the read would fail with "database is locked"."""
    url = await database_url("locked")
    first = Database(url)
    async with first.engine.begin() as conn:
        await conn.run_sync(fx_metadata.create_all)
    async with first.unit_of_work() as s:
        await s.execute(insert(Tag).values(name="a"))
    await first.dispose()
    path = make_url(url).database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO tags (name) VALUES ('held')")
    holder.execute("COMMIT")  # the exclusive lock stays until the connection closes
    release = threading.Timer(0.5, holder.close)
    db = Database(url)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        release.start()
        async with db.read_only(quick=True) as s:
            names = (await s.execute(select(Tag.name).order_by(Tag.id))).scalars().all()
        assert names == ["a", "held"]
        assert ticks >= 10  # the loop ran for most of the half second
        assert hand_offs.count >= 1  # the statement that met the lock, run again there
    finally:
        ticking.cancel()
        release.join()
        await db.dispose()
