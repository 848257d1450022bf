"""Background tasks run until shutdown: one that ends earlier is logged and fails readiness."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import pytest

from shared.app import Runtime, _report_stop, stopped_tasks


def runtime() -> Runtime:
    fake = cast(Any, None)
    return Runtime(settings=fake, db=fake, producer=fake, relay=fake)


async def spawn(rt: Runtime, coro: Any, name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(lambda done: _report_stop(rt, done))
    rt.tasks.append(task)
    return task


async def test_tasks_that_end_early_are_named_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime()

    async def forever() -> None:
        await asyncio.sleep(3600)

    async def returns() -> None:
        return None

    async def crashes() -> None:
        raise RuntimeError("boom")

    async def cancelled_from_within() -> None:
        raise asyncio.CancelledError

    with caplog.at_level(logging.ERROR, logger="shared.app"):
        running = await spawn(rt, forever(), "sender")
        for coro, name in (
            (returns(), "watcher"),
            (crashes(), "relay"),
            (cancelled_from_within(), "scheduler"),
        ):
            await spawn(rt, coro, name)
        await asyncio.sleep(0.05)
    assert sorted(stopped_tasks(rt)) == ["relay", "scheduler", "watcher"]
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "watcher returned" in messages
    assert "relay crashed" in messages
    assert "scheduler was cancelled" in messages
    rt.stopping = True  # shutting down: nothing is reported any more
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert stopped_tasks(rt) == []
