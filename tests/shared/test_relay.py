"""The outbox relay against the real broker and a real database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from shared import outbox
from shared.config import ServiceSettings
from shared.db import Database
from shared.kafka import make_producer
from shared.plumbing import outbox as outbox_table
from tests.conftest import TEST_DB
from tests.helpers import purchase, read_topic, wait_until
from tests.shared.statements import Statements, counting

pytestmark = [pytest.mark.db, pytest.mark.kafka]


class Producer:
    """The real producer, which can be made to fail at the n-th send, or to hold a send
    until released (a relay stuck mid-batch)."""

    def __init__(self, real: AIOKafkaProducer) -> None:
        self.real = real
        self.fail_at: int | None = None
        self.hold = asyncio.Event()
        self.hold.set()
        self.holding = asyncio.Event()
        self.sent = 0

    async def send(self, topic: str, **kwargs: Any) -> Any:
        if self.fail_at is not None and self.sent + 1 == self.fail_at:
            self.fail_at = None
            raise KafkaConnectionError("the broker went away mid-batch")
        if not self.hold.is_set():
            self.holding.set()
            await self.hold.wait()
        self.sent += 1
        return await self.real.send(topic, **kwargs)


@pytest.fixture
async def producer(broker: str) -> AsyncIterator[Producer]:
    real = make_producer(ServiceSettings(service_name="svc", kafka_bootstrap_servers=broker))
    await real.start()
    yield Producer(real)
    await real.stop()


def relay(
    db: Database,
    producer: Producer,
    topics: str,
    poll_interval: float = 60,
    batch_spacing: float = 0.0,
) -> outbox.Relay:
    return outbox.Relay(
        db=db,
        producer=cast(AIOKafkaProducer, producer),
        service="svc",
        topic_prefix=topics,
        poll_interval=poll_interval,
        batch_size=100,
        batch_spacing=batch_spacing,
    )


async def enqueue(db: Database, *ids: str) -> list[str]:
    """One transaction's events for one customer (one partition); returns their ids."""
    events = [purchase("c-1", purchase_id=p) for p in ids]
    async with db.unit_of_work() as session:
        await outbox.enqueue(session, *events)
    return [e.id for e in events]


async def rows(db: Database) -> int:
    async with db.unit_of_work() as session:
        return int((await session.execute(select(func.count()).select_from(outbox_table))).one()[0])


async def published(broker: str, topics: str, expect: int) -> list[str]:
    records = await read_topic(broker, f"{topics}commerce.purchases", expect=expect)
    return [json.loads(r.value)["id"] for r in records]


@pytest.mark.skipif(TEST_DB != "postgres", reason="SQLite's relay reads, sends, then deletes")
async def test_a_batch_of_ten_is_one_statement_in_one_transaction(
    broker: str, topics: str, db: Database, producer: Producer
) -> None:
    """BEGIN, ``DELETE … RETURNING`` with the advisory lock, send, COMMIT: where the lock,
    a SELECT and a DELETE were three statements."""
    ids = await enqueue(db, *(f"p-{n}" for n in range(10)))
    sender = relay(db, producer, topics)
    with counting(db) as seen:
        assert await sender.publish_batch() == 10
    assert len(seen.sql) == 1
    assert "DELETE FROM outbox" in seen.sql[0]
    assert "pg_try_advisory_xact_lock" in seen.sql[0]
    assert seen.transactions == 1
    assert await rows(db) == 0
    assert await published(broker, topics, 10) == ids


@pytest.mark.skipif(TEST_DB != "sqlite", reason="SQLite's relay")
async def test_on_sqlite_a_batch_holds_no_write_lock_while_the_broker_acknowledges(
    broker: str, topics: str, db: Database, producer: Producer
) -> None:
    """A read on the read-only engine, the sends, then one short transaction of one
    ``DELETE``; while the broker has the batch, another writer of the database commits
    (it used to wait for the relay's commit, up to the busy timeout)."""
    ids = await enqueue(db, *(f"p-{n}" for n in range(10)))
    sender = relay(db, producer, topics)
    producer.hold.clear()
    with counting(db) as seen:
        batch = asyncio.create_task(sender.publish_batch())
        await asyncio.wait_for(producer.holding.wait(), 30)
        assert seen.transactions == 0
        more = await asyncio.wait_for(enqueue(db, "q-1"), 30)  # a writer, mid-send
        producer.hold.set()
        assert await batch == 10
    assert [s.split()[0] for s in seen.sql] == ["SELECT", "INSERT", "DELETE"]
    assert seen.transactions == 2  # the enqueue's and the relay's delete
    assert await rows(db) == 1
    assert await sender.publish_batch() == 1
    assert await published(broker, topics, 11) == ids + more


@pytest.mark.skipif(TEST_DB != "sqlite", reason="SQLite's relay")
async def test_on_sqlite_a_crash_between_send_and_delete_sends_again_and_loses_nothing(
    broker: str, topics: str, db: Database, producer: Producer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await enqueue(db, *(f"p-{n}" for n in range(5)))
    crashing = relay(db, producer, topics)

    async def crash(_ids: list[int]) -> None:
        raise RuntimeError("the relay died after the broker acknowledged")

    monkeypatch.setattr(crashing, "_forget", crash)
    with pytest.raises(RuntimeError):
        await crashing.publish_batch()
    assert await rows(db) == 5  # nothing deleted
    more = await enqueue(db, "q-1")
    other = relay(db, producer, topics)
    assert await other.publish_batch() == 0  # the failed relay still holds the lock
    crashing._lock.release()  # type: ignore[union-attr]  # its process dies: the kernel's part
    assert await other.publish_batch() == 6
    assert await rows(db) == 0
    assert await published(broker, topics, 11) == ids + ids + more


@pytest.mark.skipif(TEST_DB != "sqlite", reason="SQLite's relay")
async def test_on_sqlite_a_failed_delete_is_retried_without_sending_the_batch_again(
    broker: str, topics: str, db: Database, producer: Producer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses the delete for a while (locked, read-only): the relay keeps the
    sent rows' ids and its lock, and its next batch deletes them and sends only newer rows.
    (It used to read and send the whole batch again at every retry of the outage, and a
    dead letter sent twice is two entries in the dead-letter topic.)"""
    ids = await enqueue(db, *(f"p-{n}" for n in range(5)))
    sender = relay(db, producer, topics)
    forget = sender._forget
    refusals = 2

    async def locked(row_ids: list[int]) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise OperationalError("DELETE", {}, Exception("database is locked"))
        await forget(row_ids)

    monkeypatch.setattr(sender, "_forget", locked)
    for _ in range(2):
        with pytest.raises(OperationalError):
            await sender.publish_batch()
        assert await rows(db) == 5
        assert await relay(db, producer, topics).publish_batch() == 0  # nobody takes over
    more = await enqueue(db, "q-1")
    assert await sender.publish_batch() == 1  # the 5 deleted, then only the new row sent
    assert await rows(db) == 0
    assert producer.sent == 6
    assert await published(broker, topics, 6) == ids + more


async def test_a_commit_before_the_batch_costs_no_second_empty_batch(
    topics: str, db: Database, producer: Producer
) -> None:
    sender = relay(db, producer, topics)
    await enqueue(db, "p-1")  # a local commit: wakes the relay
    assert sender._wakeup.is_set()
    assert await sender.publish_batch() == 1  # its row was in the batch's statement
    assert not sender._wakeup.is_set()  # so the relay does not go round again for it


async def test_a_send_failing_mid_batch_keeps_the_rows_which_go_out_later_in_order(
    broker: str, topics: str, db: Database, producer: Producer
) -> None:
    ids = await enqueue(db, *(f"p-{n}" for n in range(10)))
    sender = relay(db, producer, topics)
    producer.fail_at = 5
    with pytest.raises(KafkaConnectionError):
        await sender.publish_batch()
    assert await rows(db) == 10  # the delete was rolled back
    assert await sender.publish_batch() == 10
    assert await rows(db) == 0
    seen = await published(broker, topics, 14)
    # the four sent before the failure went out (at least once), then the whole batch
    assert seen == ids[:4] + ids


async def test_an_idle_relay_sweeps_without_a_transaction_and_finds_other_writers_rows(
    broker: str, topics: str, db: Database, producer: Producer
) -> None:
    """Each sweep is one read-only statement while the outbox is empty; a row committed
    by another process (no local wake-up) is found by the next sweep."""
    sender = relay(db, producer, topics, poll_interval=0.02)
    task = asyncio.create_task(sender.run())
    with counting(db) as started:  # its first batch at start, then sweeping
        await wait_until(lambda: _swept(started, 1))
    with counting(db) as seen:
        await wait_until(lambda: _swept(seen, 3))
    assert seen.transactions == 0
    assert len(seen.sql) == len(seen.on("SELECT outbox.id"))
    other = Database(db.url)  # another replica: its commits do not wake this relay
    try:
        ids = await enqueue(other, "from-elsewhere")
    finally:
        await other.dispose()
    await wait_until(lambda: _is_zero(rows(db)))
    sender.stop()
    await asyncio.wait_for(task, 30)
    assert await published(broker, topics, 1) == ids


async def _swept(seen: Statements, times: int) -> bool:
    return len(seen.on("SELECT outbox.id")) >= times


async def _is_zero(count: Any) -> bool:
    return bool(await count == 0)


async def test_two_relays_of_one_database_publish_one_at_a_time_in_order(
    broker: str, topics: str, db: Database, producer: Producer
) -> None:
    """Two replicas (two ``Database`` objects, as two processes would have): while one
    relay is mid-batch, the other publishes nothing, neither the first one's rows nor
    newer ones, and does not wait. On PostgreSQL the advisory lock does it, on SQLite the
    relay's file lock (the old SQLite relay held the write lock while sending: the other
    replica waited for it, then its rows went out)."""
    first_ids = await enqueue(db, *(f"p-{n}" for n in range(10)))
    replica = Database(db.url)
    try:
        one, two = relay(db, producer, topics), relay(replica, producer, topics)
        producer.hold.clear()
        stuck = asyncio.create_task(one.publish_batch())  # holds the lock, mid-send
        await asyncio.wait_for(producer.holding.wait(), 30)
        # the other relay neither takes the lock nor waits for the first one's rows
        assert await asyncio.wait_for(two.publish_batch(), 30) == 0
        more_ids = await enqueue(replica, *(f"q-{n}" for n in range(5)))
        assert await asyncio.wait_for(two.publish_batch(), 30) == 0
        producer.hold.set()
        assert await stuck == 10
        assert await two.publish_batch() == 5
    finally:
        await replica.dispose()
    assert await published(broker, topics, 15) == first_ids + more_ids


async def test_commits_soon_after_a_batch_wait_for_the_spacing_and_go_out_together(
    broker: str, topics: str, db: Database, producer: Producer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``batch_spacing``, a commit after a quiet spell and the two right after it go
    out at once; from then on (a steady stream) two commits that come within the spacing
    after the last batch share the next batch (one transaction, one produce request)
    instead of one batch each."""
    sender = relay(db, producer, topics, batch_spacing=3.0)
    sizes: list[int] = []
    publish = sender.publish_batch

    async def noted() -> int:
        count = await publish()
        if count:
            sizes.append(count)
        return count

    monkeypatch.setattr(sender, "publish_batch", noted)
    task = asyncio.create_task(sender.run())
    try:
        ids = await enqueue(db, "first")
        await wait_until(lambda: _is_zero(rows(db)))
        for name in ("second", "third"):
            ids += await enqueue(db, name)
            await wait_until(lambda: _is_zero(rows(db)))
        ids += await enqueue(db, "fourth")
        await asyncio.sleep(0.5)  # well inside the spacing: the relay is waiting it out
        ids += await enqueue(db, "fifth")
        await wait_until(lambda: _is_zero(rows(db)))
    finally:
        sender.stop()
        await asyncio.wait_for(task, 30)
    assert sizes == [1, 1, 1, 2]
    assert await published(broker, topics, 5) == ids
