"""Inbox retention: how long pruning holds the writer, and what the processed_at index costs.

    python -m bench.inbox_retention --url sqlite+aiosqlite:///var/bench-inbox.db
    python -m bench.inbox_retention --url postgresql+asyncpg://postgres@127.0.0.1:5432/bench_inbox

The database must exist (its plumbing tables are dropped and created again). Prints:

- pruning ``--old`` rows past the retention among ``--recent`` younger ones
  (``shared.retention.prune_inbox``): the total time, the number of batches (one
  transaction each) and each batch's DELETE time;
- the runner's inbox insert for a poll of 10 new events (``ConsumerRunner._apply_batch``,
  no handler work) over a table of ``--recent`` rows, without and with the index on
  ``processed_at``, alternately, ``--rounds`` times each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from aiokafka import ConsumerRecord
from sqlalchemy import CursorResult, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import retention
from shared.consumer import ConsumerRunner, Item
from shared.db import Database
from shared.events.commerce import PurchaseCompleted
from shared.plumbing import plumbing_metadata, processed_events
from tests.helpers import purchase

RETENTION = timedelta(days=45)


async def fresh(url: str, *, index: bool) -> Database:
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.drop_all)
        await conn.run_sync(plumbing_metadata.create_all)
        if not index:
            await conn.execute(text("DROP INDEX ix_processed_events_processed_at"))
    return db


async def fill(db: Database, count: int, age: timedelta) -> None:
    now = datetime.now(UTC)
    for start in range(0, count, 5000):
        rows = [
            {
                "source": "/pos",
                "event_id": uuid.uuid4().hex,
                "event_type": "x",
                "processed_at": now - age - timedelta(seconds=n),
            }
            for n in range(start, min(count, start + 5000))
        ]
        async with db.unit_of_work() as session:
            await session.execute(insert(processed_events), rows)


async def pruning(url: str, *, old: int, recent: int) -> str:
    db = await fresh(url, index=True)
    try:
        await fill(db, recent, timedelta(days=1))
        await fill(db, old, RETENTION + timedelta(days=15))
        cutoff = datetime.now(UTC) - RETENTION
        times: list[float] = []

        async def timed(session: AsyncSession, limit: int) -> int:
            started = time.perf_counter()
            params = {"before": cutoff, "limit": limit}
            result = await session.execute(retention._INBOX_DELETE, params)
            times.append(time.perf_counter() - started)
            return int(cast(CursorResult[Any], result).rowcount)

        started = time.perf_counter()
        pruned = await retention.prune(db, timed, service="bench", table="processed_events")
        total = time.perf_counter() - started
    finally:
        await db.dispose()
    return (
        f"pruned {pruned:,} of {old + recent:,} rows in {total:.2f} s, {len(times)} batches;"
        f" DELETE per batch median {statistics.median(times) * 1000:.1f} ms,"
        f" max {max(times) * 1000:.1f} ms"
    )


async def inbox_insert(url: str, *, index: bool, held: int, polls: int) -> str:
    db = await fresh(url, index=index)
    try:
        await fill(db, held, timedelta(days=1))

        async def nothing(session: AsyncSession, event: PurchaseCompleted) -> None:
            return None

        runner = ConsumerRunner(
            db=db,
            consumer=None,  # _apply_batch never touches it
            service="bench",
            topic_prefix="",
            handlers={PurchaseCompleted: nothing},
        )
        polled = [
            [
                Item(ConsumerRecord("t", 0, n, 0, 0, e.key, e.to_json(), None, 0, 0, []), e, None)
                for n, e in enumerate(purchase(f"c-{p}-{n}") for n in range(10))
            ]
            for p in range(polls)
        ]
        wall, cpu = time.perf_counter(), time.process_time()
        for items in polled:
            await runner._apply_batch(items)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await db.dispose()
    return (
        f"inbox insert of a 10-event poll over {held:,} rows, index {'on' if index else 'off'}:"
        f" {wall / polls * 1000:.2f} ms wall, {cpu / polls * 1000:.2f} ms client CPU per poll"
    )


async def main(args: argparse.Namespace) -> None:
    print(await pruning(args.url, old=args.old, recent=args.recent), flush=True)
    for _ in range(args.rounds):
        for index in (False, True):
            line = await inbox_insert(args.url, index=index, held=args.old, polls=args.polls)
            print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="SQLAlchemy async URL of a scratch database")
    parser.add_argument("--old", type=int, default=100_000, help="rows past the retention")
    parser.add_argument("--recent", type=int, default=20_000, help="rows within it")
    parser.add_argument("--polls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
