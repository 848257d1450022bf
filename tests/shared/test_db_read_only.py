"""Database.read_only: a transaction that reads without the write lock and cannot write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import MetaData, String, insert, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.consumer import is_transient
from shared.db import Database, ReadOnlyViolation
from tests.conftest import TEST_DB, DatabaseFactory

pytestmark = pytest.mark.db

fx_metadata = MetaData()


class Base(DeclarativeBase):
    metadata = fx_metadata


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(String(40))


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await database_url("readonly"))
    async with database.engine.begin() as conn:
        await conn.run_sync(fx_metadata.create_all)
    yield database
    await database.dispose()


async def texts(db: Database) -> list[str]:
    async with db.read_only() as s:
        return list((await s.execute(select(Note.text).order_by(Note.id))).scalars())


async def test_a_read_only_unit_of_work_sees_what_was_committed(db: Database) -> None:
    async with db.unit_of_work() as s:
        await s.execute(insert(Note), [{"text": "a"}, {"text": "b"}])
    assert await texts(db) == ["a", "b"]
    async with db.read_only() as s:
        note = await s.get(Note, 1)
        assert note is not None
        assert note.text == "a"


async def test_a_statement_that_writes_fails_and_writes_nothing(db: Database) -> None:
    with pytest.raises(ReadOnlyViolation):
        async with db.read_only() as s:
            await s.execute(insert(Note).values(text="sneaky"))
    async with db.unit_of_work() as s:
        await s.execute(insert(Note).values(text="a"))
    with pytest.raises(ReadOnlyViolation):
        async with db.read_only() as s:
            await s.execute(update(Note).values(text="changed"))
    assert await texts(db) == ["a"]


async def test_an_orm_change_is_refused_at_flush(db: Database) -> None:
    async with db.unit_of_work() as s:
        s.add(Note(id=1, text="a"))

    async def change() -> None:
        async with db.read_only() as s:
            note = await s.get(Note, 1)
            assert note is not None
            note.text = "changed"

    with pytest.raises(ReadOnlyViolation):
        await change()
    with pytest.raises(ReadOnlyViolation):
        async with db.read_only() as s:
            s.add(Note(id=2, text="new"))
    assert await texts(db) == ["a"]


async def test_a_refused_write_is_a_bug_not_a_transient_failure(db: Database) -> None:
    with pytest.raises(ReadOnlyViolation) as caught:
        async with db.read_only() as s:
            await s.execute(insert(Note).values(text="sneaky"))
    assert not is_transient(caught.value)  # a 500, not "storage busy, retry" (503)


async def test_connections_write_again_after_a_read_only_unit_of_work(db: Database) -> None:
    # One unit of work at a time: the pool hands the same connection back each time.
    for i in range(3):
        await texts(db)
        with pytest.raises(ReadOnlyViolation):
            async with db.read_only() as s:
                await s.execute(insert(Note).values(text="no"))
        async with db.unit_of_work() as s:
            await s.execute(insert(Note).values(text=str(i)))
    assert await texts(db) == ["0", "1", "2"]


async def test_a_reader_is_not_blocked_by_an_open_writer(db: Database) -> None:
    async with db.unit_of_work() as s:
        await s.execute(insert(Note).values(text="committed"))
    async with db.unit_of_work() as writer:
        # The writer holds the write lock (SQLite: BEGIN IMMEDIATE) and has not committed.
        await writer.execute(insert(Note).values(text="pending"))
        assert await asyncio.wait_for(texts(db), timeout=5) == ["committed"]
    assert await texts(db) == ["committed", "pending"]


async def test_the_readiness_ping_is_not_blocked_by_an_open_writer(db: Database) -> None:
    """/readyz pings the database; a consumer holding the write lock must not stall it."""
    async with db.unit_of_work() as writer:
        await writer.execute(insert(Note).values(text="pending"))
        await asyncio.wait_for(db.ping(), timeout=5)


async def test_read_only_runs_no_commit_callbacks(db: Database) -> None:
    called: list[str] = []
    db.on_commit(lambda: called.append("x"))
    await texts(db)
    assert called == []


async def test_a_read_only_unit_of_work_reads_one_state_throughout(db: Database) -> None:
    """Its statements read what was committed when it began (SQLite: a snapshot held from
    the first read to the end), or, on PostgreSQL, each what was committed when it began
    (READ COMMITTED, as the BEGIN … READ ONLY transaction did)."""
    async with db.unit_of_work() as s:
        await s.execute(insert(Note).values(text="first"))
    async with db.read_only() as reader:
        before = list((await reader.execute(select(Note.text))).scalars())
        async with db.unit_of_work() as s:
            await s.execute(insert(Note).values(text="second"))
        after = list((await reader.execute(select(Note.text))).scalars())
    assert before == ["first"]
    assert after == (["first", "second"] if TEST_DB == "postgres" else ["first"])
