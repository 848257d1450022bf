"""The runner's inbox (``processed_events``) on a real database, without a broker."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.consumer import ConsumerRunner, Handler, Item, batch
from shared.db import Database
from shared.events.commerce import PurchaseCompleted
from shared.plumbing import outbox, processed_events
from tests.helpers import batch_items, batch_runner, purchase
from tests.shared.statements import counting

pytestmark = [pytest.mark.db]


def _from(source: str, event: PurchaseCompleted) -> PurchaseCompleted:
    return event.model_copy(update={"source": source})


def _runner(db: Database, handler: Handler) -> ConsumerRunner:
    return batch_runner(db, {PurchaseCompleted: handler}, service="svc")


def _consumed(topic: str, outcome: str) -> float:
    counter = metrics.EVENTS_CONSUMED.labels("svc", topic, "purchase.completed", outcome)
    return float(counter._value.get())


async def _inbox_rows(db: Database) -> int:
    async with db.unit_of_work() as session:
        total = (await session.execute(select(func.count()).select_from(processed_events))).one()
    return int(total[0])


async def test_a_large_batch_with_many_sources_handles_each_new_event_once(db: Database) -> None:
    """3,000 events from 150 sources: the ones recorded earlier, and second copies in
    the batch, are skipped; an id recorded under another source is not."""
    handled: list[tuple[str, str]] = []

    async def record(session: AsyncSession, event: PurchaseCompleted) -> None:
        handled.append((event.source, event.id))

    sources = [f"/pos/store-{n}" for n in range(150)]
    events = [_from(sources[n % len(sources)], purchase(f"c-{n}")) for n in range(3000)]
    earlier = events[::3]
    async with db.unit_of_work() as session:
        rows = [{"source": e.source, "event_id": e.id, "event_type": e.type} for e in earlier]
        await session.execute(insert(processed_events), rows)
        # the same id as a new event, under another source: a different event
        other = events[1]
        await session.execute(
            insert(processed_events).values(source="/elsewhere", event_id=other.id, event_type="x")
        )
    copies = events[1:5]
    await _runner(db, record)._apply_batch(batch_items(events + copies))

    new = [(e.source, e.id) for e in events if e not in earlier]
    assert handled == new
    assert (other.source, other.id) in handled
    assert await _inbox_rows(db) == len(events) + 1


async def test_a_poll_of_ten_events_asks_the_inbox_one_statement(db: Database) -> None:
    """BEGIN, one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` for the ten ids, the
    handlers' own statements (none here), COMMIT: where a SELECT, then an INSERT, were two."""

    async def nothing(session: AsyncSession, event: PurchaseCompleted) -> None:
        return None

    runner = _runner(db, nothing)
    events = [purchase(f"c-{n}") for n in range(10)]
    with counting(db) as seen:
        assert await runner._apply_batch(batch_items(events))
    assert len(seen.sql) == 1
    assert "processed_events" in seen.sql[0]
    assert seen.transactions == 1
    assert await _inbox_rows(db) == 10
    with counting(db) as again:  # the same poll re-delivered: still one statement
        assert await runner._apply_batch(batch_items(events))
    assert (len(again.sql), again.transactions) == (1, 1)


async def test_polls_of_any_size_send_postgresql_one_inbox_text(db: Database) -> None:
    """On PostgreSQL the inbox insert binds its columns as arrays (``shared.key_lists.
    ManyRows``), so polls of 1, 7 and 40 events send the same SQL, which asyncpg prepares
    once; SQLite runs the plain insert, with a VALUES list as long as the poll."""

    async def nothing(session: AsyncSession, event: PurchaseCompleted) -> None:
        return None

    runner = _runner(db, nothing)
    with counting(db) as seen:
        for start, size in ((0, 1), (1, 7), (8, 40)):
            events = [purchase(f"c-{n}") for n in range(start, start + size)]
            assert await runner._apply_batch(batch_items(events))
    assert len(seen.sql) == 3
    assert await _inbox_rows(db) == 48
    if db.engine.dialect.name == "postgresql":
        assert len(set(seen.sql)) == 1
        assert "unnest" in seen.sql[0]
    else:
        assert len(set(seen.sql)) == 3


async def test_copies_in_a_poll_and_replays_are_skipped_and_counted(db: Database) -> None:
    handled: list[str] = []
    batches: list[list[str]] = []

    async def record(session: AsyncSession, event: PurchaseCompleted) -> None:
        handled.append(event.id)
        batches.append([e.id for e in batch(session)])

    topic = "inbox-copies"
    a, b, c = (purchase("c-1", purchase_id=p) for p in ("a", "b", "c"))
    runner = _runner(db, record)
    before = _consumed(topic, "duplicate"), _consumed(topic, "handled")
    await runner._apply_batch(batch_items([a, b, a, a, c, b], topic))
    assert handled == [a.id, b.id, c.id]
    assert batches[0] == [a.id, b.id, c.id]  # the copies are not in the handlers' batch
    assert _consumed(topic, "duplicate") - before[0] == 3
    assert _consumed(topic, "handled") - before[1] == 3

    d = purchase("c-1", purchase_id="d")
    await runner._apply_batch(batch_items([b, d, c], topic))  # a replay, with one new event
    assert handled == [a.id, b.id, c.id, d.id]
    assert batches[-1] == [d.id]
    assert _consumed(topic, "duplicate") - before[0] == 5
    assert await _inbox_rows(db) == 4


async def test_a_failed_poll_leaves_no_inbox_row_and_is_handled_on_replay(db: Database) -> None:
    """The ids are inserted before the handlers run, in their transaction: when a
    handler fails, they are rolled back with its effects and the events stay new."""
    handled: list[str] = []
    fail = True

    async def flaky(session: AsyncSession, event: PurchaseCompleted) -> None:
        if fail and event.data.purchase_id == "second":
            raise ValueError("not yet")
        handled.append(event.data.purchase_id)

    events = [purchase("c-1", purchase_id=p) for p in ("first", "second")]
    runner = _runner(db, flaky)
    with pytest.raises(ValueError, match="not yet"):
        await runner._apply_batch(batch_items(events))
    assert await _inbox_rows(db) == 0
    fail = False
    await runner._apply_batch(batch_items(events))
    assert handled == ["first", "first", "second"]
    assert await _inbox_rows(db) == 2


async def test_an_undecodable_message_is_parked_once_in_one_statement(db: Database) -> None:
    async def nothing(session: AsyncSession, event: PurchaseCompleted) -> None:
        return None

    garbage = Item(ConsumerRecord("t", 3, 7, 0, 0, b"k", b"junk", None, 0, 0, []), None, "bad")
    runner = _runner(db, nothing)
    with counting(db) as seen:
        await runner._apply_batch([garbage])
    assert len(seen.on("processed_events")) == 1  # the marker, without a SELECT first
    await runner._apply_batch([garbage])  # read again (a crash, a rebalance)
    async with db.unit_of_work() as session:
        parked = (await session.execute(select(func.count()).select_from(outbox))).one()[0]
    assert parked == 1
