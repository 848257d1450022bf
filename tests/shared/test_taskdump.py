"""The SIGUSR1 task dump names the coroutine a stalled task waits in."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from shared import taskdump


async def stuck_inside(gate: asyncio.Event) -> None:
    await gate.wait()


async def sender_loop(gate: asyncio.Event) -> None:
    await stuck_inside(gate)


async def test_the_chain_reaches_the_innermost_await() -> None:
    gate = asyncio.Event()
    task = asyncio.create_task(sender_loop(gate), name="sender")
    await asyncio.sleep(0)
    chain = taskdump.await_chain(task)
    gate.set()
    await task
    names = [line.rsplit(" ", 1)[-1] for line in chain]
    assert names[:3] == ["sender_loop", "stuck_inside", "wait"]
    assert chain[-1].startswith("awaiting Future")  # the event's future (its iterator in C)


async def test_sigusr1_logs_every_task(caplog: pytest.LogCaptureFixture) -> None:
    gate = asyncio.Event()
    task = asyncio.create_task(sender_loop(gate), name="sender")
    taskdump.install()
    try:
        with caplog.at_level(logging.WARNING, logger="shared.taskdump"):
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.sleep(0.05)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        gate.set()
        await task
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("task sender is waiting in:") and "stuck_inside" in line for line in lines
    )


def test_outside_the_main_thread_there_is_no_dump_and_no_error() -> None:
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_install_only())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == []


async def _install_only() -> None:
    taskdump.install()
