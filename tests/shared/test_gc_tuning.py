"""The collector's settings a service runs with (shared.gc_tuning) and their pause metric."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared.gc_tuning import tuned
from shared.metrics import GC_PAUSE_SECONDS
from tests.conftest import DatabaseFactory
from tests.feedback.conftest import running, settings_for


def pauses(service: str, generation: int) -> float:
    metric = GC_PAUSE_SECONDS.labels(service, str(generation))
    (family,) = metric.collect()
    return float(next(s.value for s in family.samples if s.name.endswith("_count")))


def held(thing: object, generation: int) -> bool:
    return any(o is thing for o in gc.get_objects(generation=generation))


@pytest.fixture(autouse=True)
def untouched_collector() -> Iterator[None]:
    assert gc.get_freeze_count() == 0, "another test left objects frozen"
    before = gc.get_threshold()
    yield
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_tuned_raises_the_threshold_freezes_and_undoes_both() -> None:
    before = gc.get_threshold()
    survivor = ["made before start-up ended"]  # a list: always tracked by the collector
    with tuned(service="svc", gen0_threshold=50_000, freeze=True):
        assert gc.get_threshold() == (50_000, *before[1:])
        assert gc.get_freeze_count() > 1000  # the interpreter's and the test run's objects
        assert not held(survivor, 2)  # frozen: no collection walks it
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert held(survivor, 2)


def test_zero_keeps_pythons_threshold_and_no_freeze_keeps_everything_collectable() -> None:
    before = gc.get_threshold()
    with tuned(service="svc", gen0_threshold=0, freeze=False):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


def test_every_collection_is_timed_by_generation() -> None:
    full, young = pauses("timed", 2), pauses("timed", 0)
    with tuned(service="timed", gen0_threshold=0, freeze=False):
        gc.collect(2)
        gc.collect(0)
        gc.collect(0)
    gc.collect(2)  # after the block: not recorded
    assert pauses("timed", 2) == full + 1
    assert pauses("timed", 0) == young + 2


async def test_a_service_runs_tuned_while_up_and_restores_the_collector_on_shutdown(
    database_url: DatabaseFactory,
) -> None:
    before = gc.get_threshold()
    url = await database_url("feedback")
    settings = settings_for(url, gc_gen0_threshold=20_000, gc_freeze_after_start=True)
    async with running(settings) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert gc.get_threshold()[0] == 20_000
        assert gc.get_freeze_count() > 0
        exposed = (await client.get("/metrics")).text
        assert 'keepwell_gc_pause_seconds_count{generation="2",service="feedback"}' in exposed
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
