"""The garbage collector's settings for a long-running service process.

CPython's cycle collector runs a young collection every 700 net allocations of
container objects by default, and a full one whenever the objects promoted since the
last full collection reach a quarter of the old generation. A service answering
hundreds of requests a second promotes the objects of its in-flight requests all the
time, so it collected everything, the modules, classes, mappers and schemas of
start-up included (about 150,000 objects), about once a second: 65 to 95 ms each on
this project's benchmark machine, which was the 360° view's p99 (docs/performance.md).

`tuned` (used by the service lifespan) does two things for as long as the service
runs, and undoes them when it stops:

* after start-up, `gc.collect()` then `gc.freeze()`: what start-up left alive moves
  to a permanent generation that no collection walks;
* a larger young-generation threshold (``GC_GEN0_THRESHOLD``), so most request and
  batch objects are freed by reference counting before a collection sees them and
  few are promoted.

It also records every collection's pause in ``keepwell_gc_pause_seconds``.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

from shared.metrics import GC_PAUSE_SECONDS


def pause_recorder(service: str) -> Callable[[str, dict[str, Any]], None]:
    """A `gc.callbacks` entry observing each collection's duration by generation."""
    started = 0.0
    by_generation = [GC_PAUSE_SECONDS.labels(service, str(g)) for g in range(3)]

    def record(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            by_generation[info["generation"]].observe(time.perf_counter() - started)

    return record


@contextlib.contextmanager
def tuned(*, service: str, gen0_threshold: int, freeze: bool) -> Iterator[None]:
    """Apply the settings above until the block ends; 0 keeps Python's threshold."""
    before = gc.get_threshold()
    record = pause_recorder(service)
    gc.callbacks.append(record)
    if gen0_threshold:
        gc.set_threshold(gen0_threshold, *before[1:])
    if freeze:
        gc.collect()
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()
        gc.set_threshold(*before)
        gc.callbacks.remove(record)
