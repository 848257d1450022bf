"""Durable timers on a real database: fire once, survive restarts, catch up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics, timers
from shared.db import Database
from shared.plumbing import plumbing_metadata
from shared.plumbing import timers as plumbing_timers
from tests.conftest import DatabaseFactory
from tests.helpers import wait_until
from tests.shared.statements import counting

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


async def test_a_sweep_with_nothing_due_is_one_read_only_statement(db: Database) -> None:
    """Due timers and the next one after them in one statement, on the read-only engine:
    where the sweep was a transaction, and the lag another."""
    clock = FakeClock()
    await schedule(db, "later", T0 + timedelta(hours=1))
    with counting(db) as seen:
        assert await scheduler(db, clock).fire_due() == 0
    assert len(seen.sql) == 1
    assert seen.transactions == 0


async def test_the_lag_is_how_overdue_the_oldest_due_timer_was_at_the_sweep(db: Database) -> None:
    clock = FakeClock()
    await schedule(db, "older", T0 - timedelta(minutes=10))
    await schedule(db, "old", T0 - timedelta(minutes=5))
    await schedule(db, "not yet", T0 + timedelta(minutes=5))
    sched = scheduler(db, clock)
    assert await sched.fire_due() == 2
    assert metrics.SCHEDULER_LAG.labels("t")._value.get() == 600
    assert await sched.fire_due() == 0
    assert metrics.SCHEDULER_LAG.labels("t")._value.get() == 0


class Reads:
    """Counts the scheduler's sweeps (``fire_due``) while ``run`` goes on."""

    def __init__(self, sched: timers.Scheduler) -> None:
        self.count = 0  # begun
        self.done = 0
        fire_due = sched.fire_due

        async def counted() -> int:
            self.count += 1
            try:
                return await fire_due()
            finally:
                self.done += 1

        sched.fire_due = counted  # type: ignore[method-assign]

    async def at_least(self, n: int) -> bool:
        return self.done >= n


async def settle() -> None:
    """Let the scheduler's task react to what just happened (no I/O involved)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_local_commit_of_a_later_timer_does_not_make_the_scheduler_read(
    db: Database,
) -> None:
    clock = FakeClock()
    sched = timers.Scheduler(
        db=db, handlers={"remind": record}, service="t", clock=clock, poll_interval=3600
    )
    reads = Reads(sched)
    task = asyncio.create_task(sched.run())
    try:
        await wait_until(lambda: reads.at_least(1))
        await schedule(db, "later", T0 + timedelta(hours=1))
        await settle()
        assert reads.count == 1  # it knows the timer is not due: nothing to read
        await schedule(db, "now", T0)  # due: read at once
        await wait_until(lambda: _fired(db, ["now"]))
        assert reads.count == 2
    finally:
        sched.stop()
        await asyncio.wait_for(task, 30)


async def _fired(db: Database, keys: list[str]) -> bool:
    return await fired_keys(db) == keys


async def test_a_timer_fires_when_due_without_waiting_for_the_poll_interval(
    db: Database,
) -> None:
    """The scheduler sleeps until the earliest timer it knows of, from its last read
    (scheduled before it started) or a local commit."""
    sched = timers.Scheduler(db=db, handlers={"remind": record}, service="t", poll_interval=3600)
    soon = timers.wall_clock() + timedelta(milliseconds=200)
    await schedule(db, "known from the read", soon)
    task = asyncio.create_task(sched.run())
    try:
        await wait_until(lambda: _fired(db, ["known from the read"]), timeout=20)
        await schedule(db, "known from the commit", timers.wall_clock() + timedelta(seconds=0.2))
        await wait_until(lambda: _fired(db, ["known from the read", "known from the commit"]))
    finally:
        sched.stop()
        await asyncio.wait_for(task, 30)


async def test_another_replicas_timer_is_found_by_the_bounded_poll(db: Database) -> None:
    sched = timers.Scheduler(db=db, handlers={"remind": record}, service="t", poll_interval=0.05)
    reads = Reads(sched)
    task = asyncio.create_task(sched.run())
    replica = Database(db.url)  # its commits do not reach this scheduler
    try:
        await wait_until(lambda: reads.at_least(1))
        await schedule(replica, "elsewhere", timers.wall_clock())
        await wait_until(lambda: _fired(db, ["elsewhere"]))
    finally:
        sched.stop()
        await asyncio.wait_for(task, 30)
        await replica.dispose()
