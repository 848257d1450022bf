"""The search for the sustained rate (``bench.pipeline.sustain``), against a stand-in
pipeline that keeps up with any rate up to a capacity and falls behind above it."""

from __future__ import annotations

import pytest

from bench.pipeline import KEPT_UP_AFTER, SUSTAIN_PROBES, Paced, sustain


def paced_run(rate: float, capacity: float, seconds: int = 15) -> Paced:
    """A paced run as ``bench.pipeline.paced`` reports it: above ``capacity`` the backlog
    left at the last send takes ``seconds * (rate / capacity - 1)`` to clear."""
    sent = int(rate * seconds)
    waited = 0.4 + max(0.0, seconds * (rate / capacity - 1))
    return Paced(rate, sent, [0.1] * sent, [0.3] * sent, waited)


def test_achieved_is_what_went_through_until_the_last_effect() -> None:
    assert paced_run(100, capacity=200).achieved == pytest.approx(1500 / 15.4)
    assert paced_run(400, capacity=200).achieved == pytest.approx(6000 / (15 + 15.4))


def test_kept_up_needs_every_effect_within_the_allowance() -> None:
    assert paced_run(100, capacity=200).kept_up
    assert not paced_run(300, capacity=200).kept_up
    late = Paced(100, 10, [0.1] * 10, [0.3] * 10, KEPT_UP_AFTER + 0.1)
    assert not late.kept_up
    missing = Paced(100, 10, [0.1] * 10, [0.3] * 9, 0.5)
    assert not missing.kept_up


@pytest.mark.parametrize("capacity", [60.0, 120.0, 330.0, 540.0, 700.0, 790.0])
async def test_finds_the_capacity_from_above(capacity: float) -> None:
    offered: list[float] = []

    async def run(rate: float) -> Paced:
        offered.append(rate)
        return paced_run(rate, capacity)

    first = paced_run(800, capacity)
    runs = await sustain(first, run, ceiling=1000)
    kept = max((r.rate for r in [first, *runs] if r.kept_up), default=None)
    assert len(runs) <= SUSTAIN_PROBES
    assert [r.rate for r in runs] == offered
    assert kept is not None
    # within a tenth below; the allowance lets a rate a little over the capacity pass
    assert capacity * 0.9 <= kept <= capacity * 1.1


async def test_goes_up_to_the_burst_rate_when_the_first_run_keeps_up() -> None:
    async def run(rate: float) -> Paced:
        return paced_run(rate, capacity=2000)

    runs = await sustain(paced_run(400, capacity=2000), run, ceiling=500)
    assert [r.rate for r in runs] == [500]


async def test_stops_at_the_floor_when_nothing_keeps_up() -> None:
    async def run(rate: float) -> Paced:
        return paced_run(rate, capacity=1)

    assert await sustain(paced_run(20, capacity=1), run, ceiling=25, floor=10) == []
