"""Durable timers on a real database: fire once, survive restarts, catch up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import timers
from shared.db import Database
from shared.plumbing import plumbing_metadata
from shared.plumbing import timers as plumbing_timers
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

fx_metadata = MetaData()
fired = Table(
    "fired", fx_metadata, Column("id", Integer, primary_key=True), Column("key", String(100))
)
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await database_url("timers"))
    async with database.engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all)
        await conn.run_sync(fx_metadata.create_all)
    yield database
    await database.dispose()


async def record(session: AsyncSession, timer: timers.Timer) -> None:
    await session.execute(insert(fired).values(key=timer.key))


def scheduler(db: Database, clock: FakeClock, **handlers: timers.TimerHandler) -> timers.Scheduler:
    return timers.Scheduler(
        db=db, handlers=handlers or {"remind": record}, service="t", clock=clock, max_attempts=3
    )


async def fired_keys(db: Database) -> list[str]:
    async with db.unit_of_work() as s:
        return list((await s.execute(select(fired.c.key).order_by(fired.c.id))).scalars())


async def schedule(db: Database, key: str, due: datetime, *, replace: bool = False) -> None:
    async with db.unit_of_work() as s:
        await timers.schedule(
            s, kind="remind", key=key, due_at=due, payload={"k": key}, replace=replace
        )


async def test_a_timer_fires_once_when_due_and_not_before(db: Database) -> None:
    clock = FakeClock()
    await schedule(db, "a", T0 + timedelta(hours=1))
    sched = scheduler(db, clock)
    assert await sched.fire_due() == 0
    clock.now = T0 + timedelta(hours=1)
    assert await sched.fire_due() == 1
    assert await sched.fire_due() == 0
    assert await fired_keys(db) == ["a"]


async def test_the_same_key_schedules_once_and_replace_moves_it(db: Database) -> None:
    clock = FakeClock()
    await schedule(db, "k", T0 + timedelta(minutes=5))
    await schedule(db, "k", T0 + timedelta(minutes=1))  # ignored: already scheduled
    clock.now = T0 + timedelta(minutes=2)
    assert await scheduler(db, clock).fire_due() == 0
    await schedule(db, "k", T0 + timedelta(minutes=1), replace=True)
    assert await scheduler(db, clock).fire_due() == 1
    assert await fired_keys(db) == ["k"]


async def test_a_cancelled_timer_never_fires(db: Database) -> None:
    clock = FakeClock()
    await schedule(db, "gone", T0)
    async with db.unit_of_work() as s:
        assert await timers.cancel(s, key="gone") is True
        assert await timers.cancel(s, key="gone") is False
    assert await scheduler(db, clock).fire_due() == 0
    assert await fired_keys(db) == []


async def test_timers_survive_a_restart_and_catch_up_in_due_order(db: Database) -> None:
    clock = FakeClock()
    for i, minutes in enumerate((30, 10, 20)):
        await schedule(db, f"t{i}", T0 + timedelta(minutes=minutes))
    await db.dispose()  # the process goes away; only the database remains
    revived = Database(db.url)
    clock.now = T0 + timedelta(days=2)  # came back long after everything was due
    assert await scheduler(revived, clock).fire_due() == 3
    assert await fired_keys(revived) == ["t1", "t2", "t0"]
    await revived.dispose()


async def test_a_failing_handler_is_retried_with_backoff_then_parked(db: Database) -> None:
    clock = FakeClock()
    calls = 0

    async def broken(session: AsyncSession, timer: timers.Timer) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("template missing")

    await schedule(db, "bad", T0)
    sched = scheduler(db, clock, remind=broken)
    for _ in range(5):
        await sched.fire_due()
        clock.now += timedelta(hours=1)  # past any backoff
    assert calls == 3  # max_attempts, then parked
    async with db.unit_of_work() as s:
        timer = (await s.execute(select(plumbing_metadata.tables["timers"]))).one()
    assert timer.failed == 1
    assert "ValueError: template missing" in timer.last_error


async def timer_rows(db: Database) -> list[tuple[str, datetime, object]]:
    async with db.unit_of_work() as s:
        rows = await s.execute(
            select(
                plumbing_timers.c.key, plumbing_timers.c.due_at, plumbing_timers.c.payload
            ).order_by(plumbing_timers.c.key)
        )
        return [(k, d, p) for k, d, p in rows]


async def test_deferred_timers_are_inserted_at_commit_in_one_statement(db: Database) -> None:
    statements: list[str] = []

    def seen(*args: object) -> None:
        if "timers" in str(args[2]):
            statements.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    async with db.unit_of_work() as s:
        timers.defer(s)
        for i in (3, 1, 2):
            await timers.schedule(s, kind="remind", key=f"k{i}", due_at=T0, payload={"i": i})
        await timers.schedule(s, kind="remind", key="k1", due_at=T0, payload={"i": "again"})
        assert statements == []
        assert s.info.get(timers.TIMERS_FLAG)  # the scheduler is still woken at commit
    event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    assert len(statements) == 1
    assert await timer_rows(db) == [
        ("k1", T0, {"i": 1}),  # the first schedule of a key wins, as without deferring
        ("k2", T0, {"i": 2}),
        ("k3", T0, {"i": 3}),
    ]


async def test_a_deferred_timer_is_seen_by_cancel_pending_and_replace(db: Database) -> None:
    later = T0 + timedelta(days=1)
    async with db.unit_of_work() as s:
        timers.defer(s)
        await timers.schedule(s, kind="remind", key="gone", due_at=T0, payload={})
        assert await timers.cancel(s, key="gone")
        await timers.schedule(s, kind="remind", key="gone", due_at=later, payload={"n": 2})
        await timers.schedule(s, kind="remind", key="seen", due_at=T0, payload={})
        found = await timers.pending(s, key="seen")
        assert found is not None
        assert found.due_at == T0
        await timers.schedule(s, kind="remind", key="moved", due_at=T0, payload={})
        await timers.schedule(
            s, kind="remind", key="moved", due_at=later, payload={"n": 3}, replace=True
        )
    assert await timer_rows(db) == [
        ("gone", later, {"n": 2}),
        ("moved", later, {"n": 3}),
        ("seen", T0, {}),
    ]


async def test_a_rolled_back_transaction_schedules_no_deferred_timer(db: Database) -> None:
    async def fail_after_scheduling() -> None:
        async with db.unit_of_work() as s:
            timers.defer(s)
            await timers.schedule(s, kind="remind", key="k", due_at=T0, payload={})
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_after_scheduling()
    assert await timer_rows(db) == []
