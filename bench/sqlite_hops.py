"""Wall time of a small SQLite unit of work: `python -m bench.sqlite_hops`.

One unit of work is ``BEGIN IMMEDIATE``, one INSERT and COMMIT through ``Database``;
their cost is mostly hand-offs to aiosqlite's worker thread. Three conditions: a quiet
event loop; two tasks keeping the loop busy (1 ms of CPU, then a yield, in turn); the
same plus a CPU-bound second thread, as the SMTP sink's or the Kafka client's, so each
hand-off also waits for the GIL. Prints the p50 and p90 of ``--units`` units of work
in each, and the CPU a unit of work on the quiet loop.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from contextlib import AsyncExitStack

from sqlalchemy import text

from shared.db import Database


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


async def _busy(stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        while time.perf_counter() - started < 0.001:
            pass
        await asyncio.sleep(0)


async def _units(db: Database, count: int) -> list[float]:
    walls = []
    for i in range(count):
        started = time.perf_counter()
        async with db.unit_of_work() as session:
            await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": str(i)})
        walls.append(time.perf_counter() - started)
    return sorted(walls)


async def _condition(db: Database, count: int, *, tasks: int, thread: bool) -> list[float]:
    stop, stop_thread = asyncio.Event(), threading.Event()
    busy = [asyncio.create_task(_busy(stop)) for _ in range(tasks)]
    spinner = threading.Thread(target=_spin, args=(stop_thread,)) if thread else None
    if spinner is not None:
        spinner.start()
    try:
        return await _units(db, count)
    finally:
        stop.set()
        stop_thread.set()
        await asyncio.gather(*busy)
        if spinner is not None:
            spinner.join()


async def main(units: int) -> None:
    async with AsyncExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="kw-hops-"))
        db = Database(f"sqlite+aiosqlite:///{folder}/hops.db")
        stack.push_async_callback(db.dispose)
        async with db.unit_of_work() as session:
            await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        for label, tasks, thread in (
            ("quiet loop", 0, False),
            ("busy loop (2 tasks)", 2, False),
            ("busy loop and a CPU-bound thread", 1, True),
        ):
            cpu = time.process_time()
            walls = await _condition(db, units, tasks=tasks, thread=thread)
            cpu = time.process_time() - cpu
            p50, p90 = walls[len(walls) // 2], walls[len(walls) * 9 // 10]
            line = f"{label:34} p50 {p50 * 1e3:7.2f} ms  p90 {p90 * 1e3:7.2f} ms a unit of work"
            if not tasks and not thread:
                line += f", CPU {cpu / units * 1e3:.2f} ms"
            print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--units", type=int, default=300)
    asyncio.run(main(parser.parse_args().units))
