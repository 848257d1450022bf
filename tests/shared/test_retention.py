"""Inbox retention (``shared.retention``) on a real database: old rows go, a batch per
transaction; recent ones stay, so a re-delivery within the retention is still skipped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics, retention
from shared.consumer import ConsumerRunner, Item
from shared.db import Database
from shared.events.commerce import PurchaseCompleted
from shared.plumbing import processed_events
from tests.helpers import purchase
from tests.shared.statements import counting

pytestmark = [pytest.mark.db]

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


async def record(db: Database, ages: dict[str, timedelta], *, now: datetime = NOW) -> None:
    """An inbox row per event id, recorded ``age`` before ``now``."""
    rows = [
        {"source": "/pos", "event_id": key, "event_type": "x", "processed_at": now - age}
        for key, age in ages.items()
    ]
    async with db.unit_of_work() as session:
        await session.execute(insert(processed_events), rows)


async def held(db: Database) -> set[str]:
    async with db.read_only() as session:
        return set((await session.scalars(select(processed_events.c.event_id))).all())


def pruned_count(service: str) -> float:
    return float(metrics.PRUNED_ROWS.labels(service, "processed_events")._value.get())


async def test_only_rows_past_the_retention_are_pruned(db: Database) -> None:
    await record(
        db,
        {"ancient": 400 * DAY, "old": 46 * DAY, "just-old": 45 * DAY + timedelta(minutes=1)}
        | {"just-kept": 45 * DAY - timedelta(minutes=1), "recent": DAY, "now": timedelta(0)},
    )
    async with db.unit_of_work() as session:  # one as the consumer writes it: now()
        await session.execute(
            insert(processed_events).values(source="/app", event_id="default", event_type="x")
        )
    before = pruned_count("t-age")
    assert await retention.prune_inbox(db, before=NOW - 45 * DAY, service="t-age") == 3
    assert await held(db) == {"just-kept", "recent", "now", "default"}
    assert pruned_count("t-age") - before == 3
    assert await retention.prune_inbox(db, before=NOW - 45 * DAY, service="t-age") == 0


async def test_a_cutoff_in_another_time_zone_means_the_same_instant(db: Database) -> None:
    await record(db, {"old": 2 * DAY + timedelta(hours=1), "kept": 2 * DAY - timedelta(hours=1)})
    hanoi = timezone(timedelta(hours=7))
    assert await retention.prune_inbox(db, before=(NOW - 2 * DAY).astimezone(hanoi), service="t")
    assert await held(db) == {"kept"}


async def test_each_transaction_deletes_at_most_a_batch(db: Database) -> None:
    batch = retention.PRUNE_BATCH
    old = {f"old-{n}": 50 * DAY for n in range(2 * batch + 3)}
    await record(db, old | {f"new-{n}": DAY for n in range(5)})
    deleted: list[int] = []

    def count(_conn: Any, cursor: Any, sql: str, *_args: Any) -> None:
        if sql.lstrip().upper().startswith("DELETE"):
            deleted.append(cursor.rowcount)

    event.listen(db.engine.sync_engine, "after_cursor_execute", count)
    try:
        with counting(db) as seen:
            pruned = await retention.prune_inbox(db, before=NOW - 45 * DAY, service="t")
    finally:
        event.remove(db.engine.sync_engine, "after_cursor_execute", count)
    assert pruned == 2 * batch + 3
    assert deleted == [batch, batch, 3]
    assert (len(seen.on("processed_events")), seen.transactions) == (3, 3)
    assert len(seen.sql) == 3  # the DELETE … IN (SELECT … LIMIT) is all a batch asks
    assert await held(db) == {f"new-{n}" for n in range(5)}


async def test_a_redelivery_within_the_retention_is_still_skipped(db: Database) -> None:
    """Events handled 44 days ago are still known after pruning at 45 days and are skipped
    when Kafka hands them back; those handled 46 days ago are forgotten and would be
    handled again, which is why the retention must outlast every re-delivery."""
    handled: list[str] = []

    async def handler(session: AsyncSession, event: PurchaseCompleted) -> None:
        handled.append(event.id)

    runner = ConsumerRunner(
        db=db, consumer=None, service="t", topic_prefix="", handlers={PurchaseCompleted: handler}
    )
    kept = [purchase(f"kept-{n}") for n in range(3)]
    forgotten = [purchase(f"gone-{n}") for n in range(2)]
    assert await runner._apply_batch(items(kept + forgotten))
    assert len(handled) == 5
    now = datetime.now(UTC)
    await age(db, now - 44 * DAY, kept)
    await age(db, now - 46 * DAY, forgotten)
    assert await retention.prune_inbox(db, before=now - 45 * DAY, service="t") == 2
    handled.clear()
    assert await runner._apply_batch(items(kept + forgotten))
    assert handled == [e.id for e in forgotten]


def items(events: list[PurchaseCompleted]) -> list[Item]:
    return [
        Item(ConsumerRecord("t", 0, n, 0, 0, e.key, e.to_json(), None, 0, 0, []), e, None)
        for n, e in enumerate(events)
    ]


async def age(db: Database, at: datetime, events: list[PurchaseCompleted]) -> None:
    ids = [e.id for e in events]
    async with db.unit_of_work() as session:
        await session.execute(
            update(processed_events)
            .where(processed_events.c.event_id.in_(ids))
            .values(processed_at=at)
        )


async def test_the_task_prunes_now_and_then_on_its_interval(db: Database) -> None:
    """From start-up on, then every interval: rows that age past the retention while it
    runs go at its next round."""
    clock = [NOW]
    await record(db, {"old": 46 * DAY, "later": 44 * DAY}, now=NOW)
    task = asyncio.create_task(
        retention.keep_inbox(
            db, service="t", retention_days=45, interval=0.02, clock=lambda: clock[0]
        )
    )
    try:
        await until(lambda: held(db), {"later"})
        clock[0] = NOW + 2 * DAY
        await until(lambda: held(db), set())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(read: Any, expected: Any) -> None:
    for _ in range(400):
        if await read() == expected:
            return
        await asyncio.sleep(0.02)
    assert await read() == expected
