"""Group commit of send outcomes (``settling``), with an in-memory writer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.engagement.delivery import Claim
from services.engagement.settling import GroupCommit, Outcome


def claim(n: int) -> Claim:
    return Claim(
        outreach_id=f"o-{n}",
        customer_id=f"c-{n}",
        journey="thank_you",
        channel="email",
        template="thank_you",
        trigger_event_id=None,
        attempt=1,
        context={},
        address=f"c{n}@example.com",
        name=None,
        language=None,
    )


class Writer:
    """Writes groups after a pause; fails the groups whose number is in ``failing``."""

    def __init__(self, failing: frozenset[int] = frozenset()) -> None:
        self.failing = failing
        self.written: list[list[str]] = []

    async def __call__(self, outcomes: Sequence[Outcome]) -> dict[str, str | None]:
        number = len(self.written)
        self.written.append([o.claim.outreach_id for o in outcomes])
        await asyncio.sleep(0.01)
        if number in self.failing:
            raise RuntimeError("database gone")
        return {o.claim.outreach_id: "sent" for o in outcomes}


async def test_outcomes_waiting_on_a_commit_go_together_in_the_next() -> None:
    writer = Writer()
    settler = GroupCommit(writer)
    first = asyncio.ensure_future(settler.settle(Outcome(claim(0), reply="ok")))
    await asyncio.sleep(0.001)  # its commit has begun
    rest = [settler.settle(Outcome(claim(n), reply="ok")) for n in range(1, 5)]
    assert await asyncio.gather(first, *rest) == ["sent"] * 5
    assert writer.written == [["o-0"], ["o-1", "o-2", "o-3", "o-4"]]
    assert list(settler.groups) == [1, 4]


async def test_a_failed_commit_fails_each_of_its_outcomes_and_the_next_group_still_goes() -> None:
    writer = Writer(failing=frozenset({1}))
    settler = GroupCommit(writer)
    first = asyncio.ensure_future(settler.settle(Outcome(claim(0), reply="ok")))
    await asyncio.sleep(0.001)
    doomed = [asyncio.ensure_future(settler.settle(Outcome(claim(n), reply="ok"))) for n in (1, 2)]
    assert await first == "sent"
    for future in doomed:
        with pytest.raises(RuntimeError, match="database gone"):
            await future
    assert await settler.settle(Outcome(claim(3), reply="ok")) == "sent"
    assert writer.written == [["o-0"], ["o-1", "o-2"], ["o-3"]]


async def test_a_lost_claim_settles_as_none() -> None:
    async def lost(outcomes: Sequence[Outcome]) -> dict[str, str | None]:
        return {o.claim.outreach_id: None for o in outcomes}

    assert await GroupCommit(lost).settle(Outcome(claim(0), reply="ok")) is None
