"""The event loop's lag (shared.loop_lag): how late a timer fires, as a histogram."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from shared.loop_lag import watch
from shared.metrics import EVENT_LOOP_LAG_SECONDS
from tests.conftest import DatabaseFactory
from tests.feedback.conftest import running, settings_for


def observed(service: str) -> tuple[float, float]:
    """(count, sum) of the service's lag observations."""
    (family,) = EVENT_LOOP_LAG_SECONDS.labels(service).collect()
    values = {s.name.rsplit("_", 1)[-1]: s.value for s in family.samples}
    return values["count"], values["sum"]


async def test_each_wake_up_records_how_late_it_was() -> None:
    now = 100.0
    lateness = iter([0.0, 0.3, 0.02])

    class Done(Exception):
        pass

    def clock() -> float:
        return now

    async def sleep(seconds: float) -> None:
        nonlocal now
        late = next(lateness, None)
        if late is None:
            raise Done
        now += seconds + late

    with pytest.raises(Done):  # the fake sleep stops the watcher after three wake-ups
        await watch("fake-lag", interval=0.25, clock=clock, sleep=sleep)
    count, total = observed("fake-lag")
    assert count == 3
    assert total == pytest.approx(0.32)


async def test_a_loop_held_by_blocking_work_shows_as_lag() -> None:
    before = observed("held-lag")
    task = asyncio.create_task(watch("held-lag", interval=0.01))
    await asyncio.sleep(0.03)  # the watcher is asleep, due again within 10 ms
    time.sleep(0.2)  # noqa: ASYNC251 -- holds the loop: the watcher wakes >= 190 ms late
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    count, total = observed("held-lag")
    assert count > before[0]
    assert total - before[1] >= 0.18


@pytest.mark.db
@pytest.mark.parametrize("interval_ms", [20, 0])
async def test_a_service_samples_its_loop_unless_turned_off(
    database_url: DatabaseFactory, interval_ms: int
) -> None:
    settings = settings_for(await database_url("feedback"), loop_lag_interval_ms=interval_ms)
    before, _ = observed("feedback")
    async with running(settings) as client:
        await asyncio.sleep(0.3)
        exposed = (await client.get("/metrics")).text
    after, _ = observed("feedback")
    if interval_ms:
        assert after >= before + 5
        assert 'keepwell_event_loop_lag_seconds_count{service="feedback"}' in exposed
    else:
        assert after == before
