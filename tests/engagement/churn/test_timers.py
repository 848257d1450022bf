"""Scheduled refits and re-scoring through the real durable timers (shared.timers)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from services.engagement.churn import timers
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
