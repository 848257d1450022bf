"""The runner's "already processed" check on large batches, without a broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.consumer import SOURCES_PER_QUERY, ConsumerRunner, Item
from shared.db import Database
from shared.events.commerce import PurchaseCompleted
from shared.plumbing import plumbing_metadata, processed_events
from tests.conftest import DatabaseFactory
from tests.helpers import purchase

pytestmark = [pytest.mark.db]


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await database_url("shared"))
    async with database.engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all)
    yield database
    await database.dispose()


def _items(events: list[PurchaseCompleted]) -> list[Item]:
    return [
        Item(ConsumerRecord("t", 0, n, 0, 0, e.key, e.to_json(), None, 0, 0, []), e, None)
        for n, e in enumerate(events)
    ]


def _from(source: str, event: PurchaseCompleted) -> PurchaseCompleted:
    return event.model_copy(update={"source": source})


async def test_a_large_batch_with_many_sources_handles_each_new_event_once(db: Database) -> None:
    """3,000 events (beyond what one OR term per event allowed on SQLite) from more
    sources than one query asks about: the ones recorded earlier, and second copies
    in the batch, are skipped; an id recorded under another source is not."""
    handled: list[tuple[str, str]] = []

    async def record(session: AsyncSession, event: PurchaseCompleted) -> None:
        handled.append((event.source, event.id))

    sources = [f"/pos/store-{n}" for n in range(SOURCES_PER_QUERY + 50)]
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
    runner = ConsumerRunner(
        db=db,
        consumer=None,  # _apply_batch never touches it
        service="svc",
        topic_prefix="",
        handlers={PurchaseCompleted: record},
    )
    copies = events[1:5]
    await runner._apply_batch(_items(events + copies))

    new = [(e.source, e.id) for e in events if e not in earlier]
    assert handled == new
    assert (other.source, other.id) in handled
    async with db.unit_of_work() as session:
        total = (await session.execute(select(func.count()).select_from(processed_events))).one()
    assert total[0] == len(events) + 1
