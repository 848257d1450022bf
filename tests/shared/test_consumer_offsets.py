"""When the runner commits offsets: lazily, but never past what the database holds.

Against the real broker and a real database. A runner commits the offsets it has
handled when a poll comes back empty, when ``commit_interval`` has passed, when the
group takes its partitions away and on stop. The tests hold the other triggers off
(a long interval, and a consumer that never reports an empty poll) to see each alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import ServiceSettings
from shared.consumer import ConsumerRunner, Handler
from shared.db import Database
from shared.events.commerce import PurchaseCompleted
from shared.kafka import make_consumer
from shared.plumbing import plumbing_metadata
from tests.conftest import DatabaseFactory
from tests.helpers import produce, purchase, wait_until

pytestmark = [pytest.mark.db, pytest.mark.kafka]

effects_metadata = MetaData()
effects = Table(
    "effects",
    effects_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("purchase_id", String(64)),
)

NEVER = 3600.0  # a commit interval that does not pass during a test


async def record_effect(session: AsyncSession, event: PurchaseCompleted) -> None:
    await session.execute(insert(effects).values(purchase_id=event.data.purchase_id))


@dataclass
class Spy:
    """What a runner's consumer answered and committed, in order: ``("poll", offsets)``
    for a poll with messages (the next offset of each partition), ``("empty", {})``,
    ``("commit", offsets)``. Partitions by number."""

    log: list[tuple[str, dict[int, int]]] = field(default_factory=list)
    delivered: dict[int, list[int]] = field(default_factory=dict)

    def commits(self) -> list[dict[int, int]]:
        return [offsets for kind, offsets in self.log if kind == "commit"]

    def polled(self) -> dict[int, int]:
        """The furthest offset polled per partition."""
        furthest: dict[int, int] = {}
        for kind, offsets in self.log:
            if kind == "poll":
                furthest.update(offsets)
        return furthest


def spy_on(runner: ConsumerRunner, *, busy: bool = False) -> Spy:
    """Record ``runner``'s polls and commits. A *busy* consumer never answers an empty
    poll (it polls again instead), as when messages keep coming: no idle commit."""
    spy = Spy()
    consumer = runner._consumer
    getmany, commit = consumer.getmany, consumer.commit

    async def spied_getmany(*args: object, **kwargs: object) -> dict:
        while True:
            batches: dict = await getmany(*args, **kwargs)
            if batches or not busy or runner.stopping:
                break
        if not batches:
            spy.log.append(("empty", {}))
        else:
            spy.log.append(
                ("poll", {tp.partition: rs[-1].offset + 1 for tp, rs in batches.items()})
            )
            for tp, rs in batches.items():
                spy.delivered.setdefault(tp.partition, []).extend(r.offset for r in rs)
        return batches

    async def spied_commit(offsets: dict[TopicPartition, int]) -> None:
        spy.log.append(("commit", {tp.partition: o for tp, o in offsets.items()}))
        await commit(offsets)

    consumer.getmany, consumer.commit = spied_getmany, spied_commit
    return spy


@dataclass
class Stack:
    broker: str
    db: Database
    settings: ServiceSettings
    start: Callable[..., ConsumerRunner]

    @property
    def topic(self) -> str:
        return self.settings.topic("commerce.purchases")

    async def rows(self) -> list[str]:
        async with self.db.unit_of_work() as s:
            return list((await s.execute(select(effects.c.purchase_id))).scalars())

    async def rows_when(self, count: int) -> list[str] | None:
        rows = await self.rows()
        return rows if len(rows) >= count else None

    async def produce(self, *purchase_ids: str) -> None:
        events = [purchase(f"c-{p}", purchase_id=p) for p in purchase_ids]
        await produce(self.broker, self.topic, *((e.key, e.to_json()) for e in events))

    async def committed(self) -> dict[int, int]:
        """The group's committed offsets (a probe that never joins the group)."""
        probe = AIOKafkaConsumer(
            bootstrap_servers=self.broker,
            group_id=self.settings.consumer_group(),
            enable_auto_commit=False,
        )
        await probe.start()
        try:
            parts = probe.partitions_for_topic(self.topic) or set()
            found = {p: await probe.committed(TopicPartition(self.topic, p)) for p in parts}
        finally:
            await probe.stop()
        return {p: o for p, o in found.items() if o is not None}


@pytest.fixture
async def stack(broker: str, topics: str, database_url: DatabaseFactory) -> AsyncIterator[Stack]:
    db = Database(await database_url("offsets"))
    async with db.engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all)
        await conn.run_sync(effects_metadata.create_all)
    settings = ServiceSettings(
        service_name="svc",
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        kafka_fetch_max_wait_ms=20,
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=300,
    )
    tasks: list[asyncio.Task[None]] = []
    runners: list[ConsumerRunner] = []

    def start(
        handler: Handler = record_effect, *, commit_interval: float = NEVER, max_poll: int = 500
    ) -> ConsumerRunner:
        own = settings.model_copy(update={"kafka_max_poll_records": max_poll})
        runner = ConsumerRunner(
            db=db,
            consumer=make_consumer(own, settings.topic("commerce.purchases")),
            service="svc",
            topic_prefix=topics,
            handlers={PurchaseCompleted: handler},
            backoff_initial=0.05,
            commit_interval=commit_interval,
        )
        runners.append(runner)
        tasks.append(asyncio.create_task(runner.run()))
        return runner

    yield Stack(broker, db, settings, start)
    for r in runners:
        r.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await db.dispose()


def _ids(n: int, wave: str = "a") -> list[str]:
    return [f"{wave}-{i}" for i in range(n)]  # keys c-<id>: spread over the 4 partitions


async def test_commits_are_batched_across_polls_and_made_when_a_poll_comes_back_empty(
    stack: Stack,
) -> None:
    await stack.produce(*_ids(12))
    runner = stack.start(max_poll=1)  # one message a poll: twelve polls
    spy = spy_on(runner)
    await wait_until(lambda: stack.rows_when(12), timeout=30)

    async def caught_up() -> bool:
        merged: dict[int, int] = {}
        for offsets in spy.commits():
            merged.update(offsets)
        return merged == spy.polled()

    await wait_until(caught_up, timeout=10)
    polls = [kind for kind, _ in spy.log if kind == "poll"]
    assert len(polls) == 12
    assert len(spy.commits()) < len(polls)
    since: dict[int, int] = {}  # polled since the last commit
    for previous, (kind, offsets) in zip([("", {}), *spy.log], spy.log, strict=False):
        if kind == "poll":
            since.update(offsets)
        elif kind == "commit":
            assert previous[0] == "empty", spy.log  # the idle poll, not the interval
            assert offsets == since  # every partition polled since, in one request
            since = {}


async def test_a_zero_interval_commits_after_every_poll(stack: Stack) -> None:
    await stack.produce(*_ids(8))
    runner = stack.start(commit_interval=0, max_poll=2)
    spy = spy_on(runner, busy=True)
    await wait_until(lambda: stack.rows_when(8), timeout=30)

    async def settled() -> bool:
        return len(spy.commits()) == sum(1 for kind, _ in spy.log if kind == "poll")

    await wait_until(settled, timeout=10)
    assert spy.commits() == [offsets for kind, offsets in spy.log if kind == "poll"]


async def test_stop_commits_what_was_handled(stack: Stack) -> None:
    await stack.produce(*_ids(8))
    runner = stack.start()
    spy = spy_on(runner, busy=True)  # no idle poll, and the interval never passes
    await wait_until(lambda: stack.rows_when(8), timeout=30)
    assert spy.commits() == []  # nothing committed yet: the offsets wait
    runner.stop()
    await asyncio.wait_for(runner.finished.wait(), 30)
    assert spy.commits() == [spy.polled()]
    assert await stack.committed() == spy.polled()
    assert sum(spy.polled().values()) == 8


async def test_revocation_commits_handled_offsets_before_the_partitions_move(
    stack: Stack,
) -> None:
    await stack.produce(*_ids(20))
    first = stack.start()
    first_spy = spy_on(first, busy=True)
    await wait_until(lambda: stack.rows_when(20), timeout=30)
    assert first_spy.commits() == []
    handled = first_spy.polled()
    assert len(handled) == 4  # the first runner had every partition

    second = stack.start(commit_interval=0)
    second_spy = spy_on(second)

    async def split() -> bool:
        return bool(second._consumer.assignment()) and len(first._consumer.assignment()) < 4

    await wait_until(split, timeout=30)
    assert first_spy.commits()[0] == handled  # committed on revocation, before the move
    await stack.produce(*_ids(20, wave="b"))
    rows = await wait_until(lambda: stack.rows_when(40), timeout=30)
    assert sorted(rows) == sorted(_ids(20) + _ids(20, wave="b"))
    assert second_spy.delivered, "the second runner got no partition"
    for partition, offsets in second_spy.delivered.items():
        assert min(offsets) >= handled[partition]  # nothing the first handled came again
    # A poll that waited through the rebalance counts too: on stop, the group's offsets
    # reach the end of every partition.
    for runner in (first, second):
        runner.stop()
        await asyncio.wait_for(runner.finished.wait(), 30)
    assert sum((await stack.committed()).values()) == 40


async def test_a_crash_before_the_commit_redelivers_and_the_inbox_skips(stack: Stack) -> None:
    await stack.produce(*_ids(8))
    first = stack.start()
    spy_on(first, busy=True)
    await wait_until(lambda: stack.rows_when(8), timeout=30)

    async def unreachable(offsets: dict[TopicPartition, int]) -> None:
        raise KafkaConnectionError("killed before it could commit")

    first._consumer.commit = unreachable  # as a process killed before committing
    first.stop()
    await asyncio.wait_for(first.finished.wait(), 30)
    assert await stack.committed() == {}

    seen: list[str] = []

    async def tracking(session: AsyncSession, event: PurchaseCompleted) -> None:
        seen.append(event.data.purchase_id)
        await record_effect(session, event)

    second = stack.start(tracking)
    second_spy = spy_on(second)
    await stack.produce("marker")
    rows = await wait_until(lambda: stack.rows_when(9), timeout=30)

    async def all_delivered() -> bool:
        return sum(len(offsets) for offsets in second_spy.delivered.values()) == 9

    await wait_until(all_delivered, timeout=30)  # the eight again, and the marker
    assert seen == ["marker"]  # the re-delivered eight were skipped by the inbox
    assert sorted(rows) == sorted([*_ids(8), "marker"])  # each effect once
