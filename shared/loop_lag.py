"""How late the event loop gets to what is due.

Everything a service does (requests, consumer batches, the relay, timers) shares one
event loop. When a piece of it runs long without awaiting (a big batch, a full garbage
collection, a CPU starved by its neighbours), everything else due waits, and no other
metric says why a request that costs 2 ms took 300. ``watch`` sleeps ``interval``
seconds at a time and records how much later than asked it woke up in
``keepwell_event_loop_lag_seconds``: a loop that is never held reads about zero, and the
histogram's top buckets count the stalls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from shared.metrics import EVENT_LOOP_LAG_SECONDS


async def watch(
    service: str,
    *,
    interval: float,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Record the loop's lag every ``interval`` seconds, until cancelled."""
    lag = EVENT_LOOP_LAG_SECONDS.labels(service)
    while True:
        started = clock()
        await sleep(interval)
        lag.observe(max(0.0, clock() - started - interval))
