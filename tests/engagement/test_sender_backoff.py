"""The sender's backoff after a failure (``sender._Backoff``): doubling up to its
ceiling, and ended by the first commit after the failure."""

from __future__ import annotations

import asyncio

import pytest

from services.engagement.sender import _Backoff


async def _still_waiting(wait: asyncio.Task[None], seconds: float = 0.2) -> bool:
    await asyncio.sleep(seconds)
    return not wait.done()


async def test_without_a_commit_it_waits_out_the_backoff() -> None:
    backoff = _Backoff(first=60.0, least=0.01)
    wait = asyncio.create_task(backoff.wait(1))
    assert await _still_waiting(wait)
    wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wait


async def test_a_commit_while_it_waits_ends_the_wait() -> None:
    backoff = _Backoff(first=60.0, least=0.01)
    wait = asyncio.create_task(backoff.wait(3))
    assert await _still_waiting(wait)
    backoff.committed()
    await asyncio.wait_for(wait, 5)


async def test_a_commit_since_the_failure_ends_the_wait_after_the_least() -> None:
    backoff = _Backoff(first=60.0, least=0.01)
    seen = backoff.commits
    backoff.committed()  # between the failure and the wait (its other commits settling)
    await asyncio.wait_for(backoff.wait(1, since=seen), 5)
    # A commit before the failure does not count.
    wait = asyncio.create_task(backoff.wait(1))
    assert await _still_waiting(wait)
    wait.cancel()


def test_the_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = _Backoff(first=0.4, least=0.2, most=30.0)
    assert [backoff.seconds(n) for n in range(1, 9)] == [0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0]
    assert backoff.seconds(1000) == 30.0
