"""Scheduled refits and re-scoring through the real durable timers (shared.timers)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.engagement.churn import schedule, scores, timers
from services.engagement.churn.models import ChurnModel
from shared.config import ServiceSettings
from shared.db import Database
from shared.plumbing import timers as timer_table
from shared.timers import Scheduler
from tests.engagement.churn.support import (
    CONFIG,
    Clock,
    band_changes,
    customers,
    handle,
    population_events,
)

pytestmark = pytest.mark.db

T0 = datetime(2025, 7, 1, 9, 30, tzinfo=UTC)


async def pending_timers(db: Database) -> list[tuple[str, datetime]]:
    async with db.unit_of_work() as session:
        rows = await session.execute(select(timer_table.c.key, timer_table.c.due_at))
        return sorted(((r.key, r.due_at) for r in rows), key=lambda kv: kv[1])


async def test_purchases_start_the_schedule_and_it_catches_up_after_downtime(
    db: Database,
) -> None:
    clock = Clock(T0)
    await handle(db, *population_events(), batch=50, clock=clock)
    assert [due for _, due in await pending_timers(db)] == [
        datetime(2025, 7, 1, 10, tzinfo=UTC),  # next hourly re-score
        datetime(2025, 7, 2, tzinfo=UTC),  # next daily refit
    ]
    scheduler = Scheduler(
        db=db,
        handlers=timers.timer_handlers(ServiceSettings(), CONFIG, clock),
        service="engagement",
        clock=clock,
    )
    clock.now = T0 + timedelta(days=3)  # the service was down for three days
    while await scheduler.fire_due():
        pass
    async with db.unit_of_work() as session:
        models = (await session.scalars(select(ChurnModel))).all()
    assert [m.calibration_end for m in models] == [date(2025, 7, 4)]  # one refit, as of now
    rows = await customers(db)
    assert {r.scored_at for r in rows.values()} == {clock.now}  # re-scored once, as of now
    assert len(await band_changes(db)) == sum(r.band != "low" for r in rows.values())
    assert [due for _, due in await pending_timers(db)] == [
        datetime(2025, 7, 4, 10, tzinfo=UTC),
        datetime(2025, 7, 5, tzinfo=UTC),
    ]


async def test_a_rescore_goes_chunk_by_chunk_and_on_after_a_failed_chunk(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk is its own transaction (its rows locked only while it runs); a chunk that
    fails is retried as the timer it is, and the chain goes on from there: every customer
    scored once, none skipped."""
    clock = Clock(T0)
    await handle(db, *population_events(), batch=50, clock=clock)
    config = CONFIG.model_copy(update={"rescore_chunk": 7})
    scheduler = Scheduler(
        db=db,
        handlers=timers.timer_handlers(ServiceSettings(), config, clock),
        service="engagement",
        clock=clock,
    )
    stored: list[list[str]] = []
    real_store, real_chunk = scores._store, scores.rescore_chunk

    async def store(session: Any, rows: Any, *args: Any) -> None:
        await real_store(session, rows, *args)
        stored.append([r.customer_id for r in rows])

    calls = 0

    async def chunk(session: Any, **kwargs: Any) -> scores.Chunk:
        nonlocal calls
        calls += 1
        if calls == 4:  # the refit's chain's third chunk, once
            raise RuntimeError("the database went away")
        return await real_chunk(session, **kwargs)

    monkeypatch.setattr(scores, "_store", store)
    monkeypatch.setattr(scores, "rescore_chunk", chunk)
    clock.now = T0 + timedelta(days=3)
    while await scheduler.fire_due():
        pass
    assert len(stored) == 2  # the overdue hourly slot found no model; the refit's chain ran
    clock.now += timedelta(minutes=5)  # past the failed chunk's back-off
    while await scheduler.fire_due():
        pass

    rows = await customers(db)
    assert [len(ids) for ids in stored] == [7, 7, 7, 7, 7, 5]
    assert sorted(c for ids in stored for c in ids) == sorted(rows)
    assert {r.scored_at for r in rows.values()} == {T0 + timedelta(days=3), clock.now}
    assert len(await band_changes(db)) == sum(r.band != "low" for r in rows.values())
    assert [key for key, _ in await pending_timers(db)] == [  # no chunk left over
        schedule.next_slot(schedule.RESCORE, config, clock.now)[0],
        schedule.next_slot(schedule.REFIT, config, clock.now)[0],
    ]
