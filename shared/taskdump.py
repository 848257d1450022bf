"""Where every asyncio task of a live service is waiting, on ``SIGUSR1``.

A background loop that stops making progress without raising leaves nothing in
the logs; ``kill -USR1 <pid>`` then logs, for each task, the chain of coroutines
it is suspended in (each ``await`` down to the innermost future), so a stall can
be located on a running process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)
MAX_DEPTH = 40


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """``file:line function`` for each coroutine ``task`` is suspended in, outermost first,
    ending with what the innermost one awaits (a future, a task) when it is not a coroutine."""
    return [*_frames(task.get_coro())]


def _frames(awaited: Any) -> Iterator[str]:
    for _ in range(MAX_DEPTH):
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            if awaited is not None:
                yield f"awaiting {type(awaited).__name__}"
            return
        yield f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)


def dump_tasks() -> int:
    """Log every task's await chain; returns how many tasks were logged."""
    tasks = asyncio.all_tasks()
    for task in sorted(tasks, key=lambda t: t.get_name()):
        log.warning(
            "task %s is waiting in: %s", task.get_name(), " -> ".join(await_chain(task)) or "-"
        )
    return len(tasks)


def install() -> None:
    """Dump the tasks on SIGUSR1 (where the platform has it and the loop takes signals)."""
    sigusr1 = getattr(signal, "SIGUSR1", None)
    if sigusr1 is None:
        return
    try:
        asyncio.get_running_loop().add_signal_handler(sigusr1, dump_tasks)
    except (NotImplementedError, RuntimeError, ValueError) as exc:  # not the main thread
        log.info("task dump on SIGUSR1 not available: %s", exc)
