"""The consumer runner against the real broker and a real database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import ServiceSettings
from shared.consumer import ConsumerRunner, Handler, TransientError, batch, is_transient
from shared.db import Database
from shared.events.base import Money
from shared.events.commerce import PurchaseCompleted, PurchaseRefunded, PurchaseRefundedData
from shared.kafka import make_consumer, make_producer
from shared.outbox import Relay
from shared.plumbing import outbox, plumbing_metadata
from tests.conftest import DatabaseFactory
from tests.helpers import headers_of, produce, purchase, read_topic, wait_until

pytestmark = [pytest.mark.db, pytest.mark.kafka]

effects_metadata = MetaData()
effects = Table(
    "effects",
    effects_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("purchase_id", String(64)),
)


@dataclass
class Harness:
    db: Database
    settings: ServiceSettings
    topic: str
    start: Callable[..., Awaitable[ConsumerRunner]]

    async def effect_rows(self) -> list[str]:
        async with self.db.unit_of_work() as s:
            return list((await s.execute(select(effects.c.purchase_id))).scalars())

    async def outbox_count(self) -> int:
        async with self.db.unit_of_work() as s:
            return int((await s.execute(select(func.count()).select_from(outbox))).scalar_one())


async def record_effect(session: AsyncSession, event: PurchaseCompleted) -> None:
    await session.execute(insert(effects).values(purchase_id=event.data.purchase_id))


@pytest.fixture
async def harness(
    broker: str, topics: str, database_url: DatabaseFactory
) -> AsyncIterator[Harness]:
    db = Database(await database_url("shared"))
    async with db.engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all)
        await conn.run_sync(effects_metadata.create_all)
    settings = ServiceSettings(
        service_name="svc",
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        kafka_fetch_max_wait_ms=20,
    )
    producer = make_producer(settings)
    await producer.start()
    relay = Relay(
        db=db,
        producer=producer,
        service="svc",
        topic_prefix=topics,
        poll_interval=0.05,
        batch_size=100,
    )
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(relay.run())]
    runners: list[ConsumerRunner] = []

    async def start(
        handler: Handler,
        group: str | None = None,
        commit_interval: float = 1.0,
        batch_spacing: float = 0.0,
    ) -> ConsumerRunner:
        own = settings.model_copy(update={"kafka_consumer_group": group}) if group else settings
        consumer = make_consumer(own, settings.topic("commerce.purchases"))
        runner = ConsumerRunner(
            db=db,
            consumer=consumer,
            service="svc",
            topic_prefix=topics,
            handlers={PurchaseCompleted: handler},
            backoff_initial=0.05,
            commit_interval=commit_interval,
            batch_spacing=batch_spacing,
        )
        runners.append(runner)
        tasks.append(asyncio.create_task(runner.run()))
        return runner

    yield Harness(db, settings, settings.topic("commerce.purchases"), start)
    for r in runners:
        r.stop()
    relay.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await producer.stop()
    await db.dispose()


async def test_redelivered_event_takes_effect_once(broker: str, harness: Harness) -> None:
    event = purchase("c-1", purchase_id="p-dup")
    other = purchase("c-1", purchase_id="p-after")
    raw = event.to_json()
    await produce(
        broker,
        harness.topic,
        (b"c-1", raw),
        (b"c-1", raw),
        (b"c-1", raw),
        (b"c-1", other.to_json()),
    )
    await harness.start(record_effect)
    rows = await wait_until(lambda: _rows_when(harness, lambda r: "p-after" in r), timeout=20)
    assert sorted(rows) == ["p-after", "p-dup"]
    # Delivered again later (a producer retry long after the first copy): still once.
    await produce(broker, harness.topic, (b"c-1", raw))
    marker = purchase("c-1", purchase_id="p-marker")
    await produce(broker, harness.topic, (b"c-1", marker.to_json()))
    rows = await wait_until(lambda: _rows_when(harness, lambda r: "p-marker" in r), timeout=20)
    assert sorted(rows) == ["p-after", "p-dup", "p-marker"]


async def test_polls_soon_after_a_batch_wait_for_the_spacing_and_are_handled_together(
    broker: str, harness: Harness
) -> None:
    """With ``batch_spacing``, a message after a quiet spell and the two right after it
    are handled at once; from then on (a steady stream) a message polled within the
    spacing after the last batch waits it out, and one that arrives meanwhile joins it
    in the same batch (one transaction) instead of a batch of its own."""
    batches: list[tuple[str, int]] = []

    async def note(session: AsyncSession, event: PurchaseCompleted) -> None:
        batches.append((event.data.purchase_id, len(batch(session))))
        await record_effect(session, event)

    async def send(name: str) -> None:
        message = purchase("c-s", purchase_id=name)
        await produce(broker, harness.topic, (b"c-s", message.to_json()))

    await harness.start(note, batch_spacing=3.0)
    await send("first")
    await wait_until(lambda: _rows_when(harness, lambda r: "first" in r), timeout=20)
    await send("second")
    await wait_until(lambda: _rows_when(harness, lambda r: "second" in r), timeout=20)
    await send("third")
    await wait_until(lambda: _rows_when(harness, lambda r: "third" in r), timeout=20)
    await send("fourth")
    await asyncio.sleep(0.5)  # well inside the spacing: "fourth" is polled and waiting
    await send("fifth")
    await wait_until(lambda: _rows_when(harness, lambda r: "fifth" in r), timeout=20)
    assert batches == [("first", 1), ("second", 1), ("third", 1), ("fourth", 2), ("fifth", 2)]


async def _rows_when(harness: Harness, cond: Callable[[list[str]], bool]) -> list[str] | None:
    rows = await harness.effect_rows()
    return rows if cond(rows) else None


async def test_garbage_is_dead_lettered_and_the_partition_moves_on(
    broker: str, topics: str, harness: Harness
) -> None:
    first, second = purchase("c-2", purchase_id="good-1"), purchase("c-2", purchase_id="good-2")
    missing = json.loads(first.to_json())
    del missing["data"]["total"]
    missing["id"] = "missing-total"
    unknown = {**json.loads(first.to_json()), "type": "purchase.teleported", "id": "unknown"}
    garbage = [
        b"\x00\xffnot json at all",
        json.dumps(missing).encode(),
        json.dumps(unknown).encode(),
    ]
    await produce(
        broker,
        harness.topic,
        (b"c-2", first.to_json()),
        *((b"c-2", g) for g in garbage),
        (b"c-2", second.to_json()),
    )
    runner = await harness.start(record_effect)
    rows = await wait_until(lambda: _rows_when(harness, lambda r: len(r) == 2), timeout=20)
    assert sorted(rows) == ["good-1", "good-2"]
    dead = await read_topic(broker, f"{topics}svc.deadletter", expect=3)
    assert [d.value for d in dead] == garbage
    reasons = [headers_of(d)["x-dead-letter-reason"] for d in dead]
    assert "Invalid JSON" in reasons[0]
    assert "total: Field required" in reasons[1]
    assert "unknown event type: 'purchase.teleported'" in reasons[2]
    assert all(headers_of(d)["x-original-topic"] == harness.topic for d in dead)
    assert not runner.stopping
    assert await wait_until(lambda: _is_zero(harness.outbox_count()), timeout=10)


async def test_garbage_read_again_is_dead_lettered_once(
    broker: str, topics: str, harness: Harness
) -> None:
    """A replica re-reading offsets nobody committed (a crash, a rebalance) parks nothing twice."""
    garbage = [b"{not json", b"[1, 2]"]
    await produce(broker, harness.topic, *((b"c-3", g) for g in garbage))
    first = await harness.start(record_effect)
    assert len(await read_topic(broker, f"{topics}svc.deadletter", expect=2)) == 2
    first.stop()
    await asyncio.wait_for(first.finished.wait(), 30)  # the marker below is the replica's alone
    await harness.start(record_effect, group=f"{topics}svc-replay")  # reads from offset 0
    marker = purchase("c-3", purchase_id="after-replay")
    await produce(broker, harness.topic, (b"c-3", marker.to_json()))
    await wait_until(lambda: _rows_when(harness, lambda r: "after-replay" in r), timeout=20)
    await wait_until(lambda: _is_zero(harness.outbox_count()), timeout=10)
    dead = await read_topic(broker, f"{topics}svc.deadletter", expect=3, timeout=2)
    assert [d.value for d in dead] == garbage


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def test_a_handler_that_keeps_failing_parks_only_its_event(
    broker: str, topics: str, harness: Harness
) -> None:
    async def picky(session: AsyncSession, event: PurchaseCompleted) -> None:
        if event.data.purchase_id == "poison":
            raise ValueError("cannot price this basket")
        await record_effect(session, event)

    events = [purchase("c-3", purchase_id=p) for p in ("ok-1", "poison", "ok-2")]
    await produce(broker, harness.topic, *((b"c-3", e.to_json()) for e in events))
    await harness.start(picky)
    rows = await wait_until(lambda: _rows_when(harness, lambda r: len(r) == 2), timeout=20)
    assert sorted(rows) == ["ok-1", "ok-2"]
    dead = await read_topic(broker, f"{topics}svc.deadletter", expect=1)
    assert len(dead) == 1
    assert dead[0].value == events[1].to_json()
    assert "ValueError: cannot price this basket" in headers_of(dead[0])["x-dead-letter-reason"]


async def test_transient_failures_are_retried_not_dead_lettered(
    broker: str, topics: str, harness: Harness
) -> None:
    attempts = 0

    async def flaky(session: AsyncSession, event: PurchaseCompleted) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 4:
            raise TransientError("database restarting")
        await record_effect(session, event)

    await produce(broker, harness.topic, (b"c-4", purchase("c-4", purchase_id="p-t").to_json()))
    await harness.start(flaky)
    assert await wait_until(lambda: _rows_when(harness, lambda r: r == ["p-t"]), timeout=20)
    assert attempts == 5
    assert await read_topic(broker, f"{topics}svc.deadletter", expect=0, timeout=1) == []


async def test_a_restarted_consumer_resumes_after_the_committed_offset(
    broker: str, harness: Harness
) -> None:
    seen: list[str] = []

    async def tracking(session: AsyncSession, event: PurchaseCompleted) -> None:
        seen.append(event.data.purchase_id)
        await record_effect(session, event)

    await produce(broker, harness.topic, (b"c-5", purchase("c-5", purchase_id="a").to_json()))
    runner = await harness.start(tracking)
    await wait_until(lambda: _rows_when(harness, lambda r: r == ["a"]), timeout=20)
    runner.stop()
    await asyncio.sleep(0.5)
    await produce(broker, harness.topic, (b"c-5", purchase("c-5", purchase_id="b").to_json()))
    await harness.start(tracking)
    await wait_until(lambda: _rows_when(harness, lambda r: sorted(r) == ["a", "b"]), timeout=30)
    assert seen == ["a", "b"]  # "a" was not handed to the handler a second time


async def test_handlers_are_told_the_events_of_their_batch(broker: str, harness: Harness) -> None:
    """``batch(session)``: the events handed over in this transaction, in order, each once."""
    calls: list[tuple[str, list[str]]] = []

    async def reading_ahead(session: AsyncSession, event: PurchaseCompleted) -> None:
        calls.append((event.id, [e.id for e in batch(session)]))
        await record_effect(session, event)

    first, second = purchase("c-6", purchase_id="b-1"), purchase("c-6", purchase_id="b-2")
    raw = first.to_json()
    await produce(broker, harness.topic, *((b"c-6", m) for m in (raw, b"junk", raw)))
    await produce(broker, harness.topic, (b"c-6", second.to_json()), (b"c-6", raw))
    await harness.start(reading_ahead)
    await wait_until(lambda: _rows_when(harness, lambda r: len(r) == 2), timeout=20)
    assert [event_id for event_id, _ in calls] == [first.id, second.id]
    for event_id, events in calls:
        assert event_id in events
        assert len(set(events)) == len(events)  # the copies and the junk are not in it
    assert calls[-1][1][-1] == second.id  # the last copy of ``first`` was not handed over


async def test_a_poll_commits_its_partitions_offsets_in_one_request(
    broker: str, harness: Harness
) -> None:
    """With a zero commit interval, every partition batch of a poll is handled, then one
    commit names them all (test_consumer_offsets: commits spanning several polls)."""
    keys = [f"c-{i}".encode() for i in range(12)]  # spread over the 4 partitions
    await produce(
        broker,
        harness.topic,
        *((k, purchase(k.decode(), purchase_id=f"p-{k.decode()}").to_json()) for k in keys),
    )
    runner = await harness.start(record_effect, commit_interval=0)
    polls: list[dict[str, int]] = []
    commits: list[dict[str, int]] = []
    consumer = runner._consumer
    getmany, commit = consumer.getmany, consumer.commit

    async def spied_getmany(*args: object, **kwargs: object) -> dict:
        batches: dict = await getmany(*args, **kwargs)
        if batches:
            polls.append({f"{tp.partition}": rs[-1].offset + 1 for tp, rs in batches.items()})
        return batches

    async def spied_commit(offsets: dict) -> None:
        commits.append({f"{tp.partition}": o for tp, o in offsets.items()})
        await commit(offsets)

    consumer.getmany, consumer.commit = spied_getmany, spied_commit
    await wait_until(lambda: _rows_when(harness, lambda r: len(r) == len(keys)), timeout=20)

    async def settled() -> bool:
        return len(commits) == len(polls)

    await wait_until(settled, timeout=10)
    assert any(len(p) > 1 for p in polls), "no poll returned several partitions"
    assert commits == polls


async def test_events_without_a_handler_open_no_transaction(broker: str, harness: Harness) -> None:
    commits: list[str] = []
    harness.db.on_commit(lambda: commits.append("commit"))
    refunds = [
        PurchaseRefunded.create(
            subject="c-7",
            source="/tests/pos",
            data=PurchaseRefundedData(
                purchase_id=f"r-{i}", refund_id=f"rf-{i}", amount=Money(amount="1", currency="EUR")
            ),
        )
        for i in range(3)
    ]
    await produce(broker, harness.topic, *((b"c-7", r.to_json()) for r in refunds))
    runner = await harness.start(record_effect)
    await wait_until(lambda: _committed(runner, harness.topic, 3), timeout=20)
    assert commits == []
    await produce(broker, harness.topic, (b"c-7", purchase("c-7", purchase_id="p-7").to_json()))
    await wait_until(lambda: _rows_when(harness, lambda r: r == ["p-7"]), timeout=20)
    assert commits  # a handled event does commit a transaction


async def _committed(runner: ConsumerRunner, topic: str, total: int) -> bool | None:
    consumer = runner._consumer
    parts = consumer.assignment()
    offsets = [await consumer.committed(tp) or 0 for tp in parts if tp.topic == topic]
    return True if sum(offsets) >= total else None


class _PgError(Exception):
    def __init__(self, sqlstate: str, message: str = "") -> None:
        super().__init__(message or sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        ("55006", True),  # object in use
        ("55P03", True),  # lock not available
        ("57P01", True),  # admin shutdown
        ("57P03", True),  # cannot connect now
        ("08006", True),  # connection failure
        ("53300", True),  # too many connections
        ("40001", True),  # serialization failure
        ("40P01", True),  # deadlock detected
        ("23505", False),  # unique violation: a bug or a conflict, not an outage
        ("22P02", False),  # invalid text representation
    ],
)
def test_database_outages_are_transient_and_data_errors_are_not(
    sqlstate: str, transient: bool
) -> None:
    exc = DBAPIError("statement", {}, _PgError(sqlstate))
    assert is_transient(exc) is transient


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ('database "loyalty" is not currently accepting connections', True),  # maintenance
        ("currval of sequence is not yet defined in this session", False),  # a bug
    ],
)
def test_a_database_closed_to_connections_is_transient_but_other_55000s_are_not(
    message: str, transient: bool
) -> None:
    exc = DBAPIError("connect", {}, _PgError("55000", message))
    assert is_transient(exc) is transient
