"""Regression test from the chaos run: a consumer whose partitions are taken away by a
rebalance while it is handling a batch must carry on, not die.

When the batch's transaction ends, some of its partitions may have moved: aiokafka
raises ``IllegalStateError`` ("Partition … is not assigned") for a commit naming them,
and asserts on their high-water mark. That used to end the consumer task while the
service stayed up; now the runner commits only the partitions it still has, lets the
new owner resume the others (it skips what was recorded) and keeps consuming.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import Column, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import ServiceSettings
from shared.consumer import ConsumerRunner
from shared.db import Database
from shared.events.commerce import PurchaseCompleted
from shared.kafka import make_consumer
from shared.plumbing import plumbing_metadata
from tests.conftest import DatabaseFactory
from tests.helpers import produce, purchase, wait_until

pytestmark = [pytest.mark.db, pytest.mark.kafka]

effects_metadata = MetaData()
effects = Table("effects", effects_metadata, Column("purchase_id", String(64), primary_key=True))


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    database = Database(await database_url("rebalance"))
    async with database.engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all)
        await conn.run_sync(effects_metadata.create_all)
    yield database
    await database.dispose()


def runner(db: Database, settings: ServiceSettings, handler: object) -> ConsumerRunner:
    consumer = make_consumer(settings, settings.topic("commerce.purchases"))
    return ConsumerRunner(
        db=db,
        consumer=consumer,
        service="svc",
        topic_prefix=settings.topic_prefix,
        handlers={PurchaseCompleted: handler},  # type: ignore[dict-item]
        backoff_initial=0.05,
    )


def assignment(r: ConsumerRunner) -> set[object]:
    consumer: AIOKafkaConsumer = r._consumer
    return set(consumer.assignment())


async def test_a_consumer_losing_its_partitions_mid_batch_keeps_consuming(
    broker: str, topics: str, db: Database
) -> None:
    settings = ServiceSettings(
        service_name="svc",
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        kafka_fetch_max_wait_ms=20,
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=300,
    )
    release = asyncio.Event()

    async def slow(session: AsyncSession, event: PurchaseCompleted) -> None:
        await release.wait()  # mid-batch while the group rebalances
        await session.execute(insert(effects).values(purchase_id=event.data.purchase_id))

    events = [purchase(f"c-{i}", purchase_id=f"p-{i}") for i in range(40)]
    topic = settings.topic("commerce.purchases")
    await produce(broker, topic, *[(e.key, e.to_json()) for e in events])
    first = runner(db, settings, slow)
    first_task = asyncio.create_task(first.run())
    await wait_until(lambda: _true(len(assignment(first)) == 4), timeout=20)
    second = runner(db, settings, slow)
    second_task = asyncio.create_task(second.run())
    try:
        await wait_until(lambda: _true(len(assignment(first)) < 4), timeout=30)
        release.set()
        rows = await wait_until(lambda: _all_rows(db, len(events)), timeout=30)
        assert sorted(rows) == sorted(e.data.purchase_id for e in events)
        assert not first_task.done(), first_task.exception()
    finally:
        first.stop()
        second.stop()
        await asyncio.gather(first_task, second_task, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value


async def _all_rows(db: Database, count: int) -> list[str] | None:
    async with db.unit_of_work() as session:
        rows = list((await session.execute(select(effects.c.purchase_id))).scalars())
    return rows if len(rows) >= count else None
