"""Loyalty ledger benchmark: `PYTHONPATH=. .venv/bin/python -m bench.loyalty [--db postgres]`.

Starts its own broker, then prints:
  1. purchases/s the loyalty consumer sustains (the real runner and handlers, the
     real database), next to the floor measured in the same run on the same kind of
     database: a bare consumer through the same runner and batch size whose handler
     parses the event and inserts one row;
  2. redemption requests/s through the HTTP app (in-process ASGI, concurrent
     clients, distinct members) with p50 / p99 latency.
The outbox relay is off in part 1, so both consumers measure database work only.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from services.loyalty import consumers
from services.loyalty.config import LoyaltySettings
from services.loyalty.main import MIGRATIONS, create_app
from services.loyalty.service import members
from shared.consumer import ConsumerRunner, Handlers
from shared.db import Database
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData, PurchaseLine
from shared.kafka import create_topics, make_consumer
from shared.migrations import upgrade_async
from shared.plumbing import plumbing_metadata, processed_events
from tests.helpers import TEST_SECRET, auth_headers
from tools import broker as tansu
from tools.databases import DatabaseMaker

floor_metadata = MetaData()
floor_rows = Table(
    "floor_rows",
    floor_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("purchase_id", String(128)),
    Column("customer_id", String(64)),
)


def make_purchase(customer: str, i: int) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=customer,
        source="/bench/pos",
        data=PurchaseCompletedData(
            purchase_id=f"B-{i}-{uuid.uuid4().hex[:6]}",
            channel="store",
            total={"amount": Decimal("25.50"), "currency": "EUR"},
            lines=(
                PurchaseLine(sku="A-1", category="food", quantity=2, unit_price=Decimal("10")),
                PurchaseLine(sku="B-2", quantity=1, unit_price=Decimal("5.50")),
            ),
        ),
    )


async def produce(bootstrap: str, topic: str, count: int, customers: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        batch = []
        for i in range(count):
            event = make_purchase(f"cus-{i % customers}", i)
            batch.append(await producer.send(topic, value=event.to_json(), key=event.key))
        await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def floor_handler(session: AsyncSession, event: PurchaseCompleted) -> None:
    await session.execute(
        insert(floor_rows).values(purchase_id=event.data.purchase_id, customer_id=event.subject)
    )


@dataclass
class Rate:
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def processed(engine: AsyncEngine) -> int:
    """Events handled so far, read on a plain connection (no write lock taken)."""
    async with engine.connect() as conn:
        query = select(func.count()).select_from(processed_events)
        return int((await conn.execute(query)).scalar_one())


async def consume(
    settings: LoyaltySettings, db: Database, handlers: Handlers, topic: str, count: int
) -> Rate:
    """Run the real consumer runner until ``count`` events are handled; time the work.

    The clock starts at the last poll that saw nothing handled yet, so consumer-group
    start-up is not counted.
    """
    runner = ConsumerRunner(
        db=db,
        consumer=make_consumer(settings, topic),
        service=settings.service_name,
        topic_prefix=settings.topic_prefix,
        handlers=handlers,
    )
    watcher = create_async_engine(db.url, poolclass=NullPool)
    task = asyncio.create_task(runner.run())
    started = time.perf_counter()
    try:
        while (done := await processed(watcher)) < count:
            if done == 0:
                started = time.perf_counter()
            await asyncio.sleep(0.02)
        return Rate(count, time.perf_counter() - started)
    finally:
        runner.stop()
        await task
        await watcher.dispose()


async def floor_database(maker: DatabaseMaker) -> Database:
    db = Database(await maker("floor"))
    async with db.engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all)
        await conn.run_sync(floor_metadata.create_all)
    return db


async def loyalty_database(maker: DatabaseMaker) -> Database:
    url = await maker("loyalty")
    await upgrade_async(MIGRATIONS, url)
    return Database(url)


async def run_consumers(
    bootstrap: str, maker: DatabaseMaker, count: int, customers: int
) -> tuple[Rate, Rate]:
    prefix = f"b{uuid.uuid4().hex[:6]}."
    topic = f"{prefix}commerce.purchases"
    base = LoyaltySettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
    await create_topics(base, [topic], partitions=4)
    await produce(bootstrap, topic, count, customers)
    floor_db, loyalty_db = await floor_database(maker), await loyalty_database(maker)
    try:
        floor_settings = base.model_copy(update={"service_name": "bench-floor"})
        floor = await consume(
            floor_settings, floor_db, {PurchaseCompleted: floor_handler}, topic, count
        )
        settings = base.model_copy(update={"service_name": "bench-loyalty"})
        loyalty = await consume(settings, loyalty_db, consumers.handlers(settings), topic, count)
    finally:
        await floor_db.dispose()
        await loyalty_db.dispose()
    return floor, loyalty


async def seed_members(db: Database, count: int, points: int) -> None:
    settings = LoyaltySettings(expiry_days=None)
    async with db.unit_of_work() as session:
        for i in range(count):
            await members.adjust(
                session,
                customer_id=f"m-{i}",
                points=points,
                reason="bench seed",
                reference=f"seed-{i}",
                operator="bench",
                now=datetime.now(UTC),
                settings=settings,
            )


async def run_redemptions(
    maker: DatabaseMaker, requests: int, concurrency: int
) -> tuple[Rate, list[float]]:
    db = await loyalty_database(maker)
    member_count = 200
    await seed_members(db, member_count, points=requests)
    settings = LoyaltySettings(
        database_url=db.url,
        auth_secret=TEST_SECRET,
        consumer_enabled=False,
        relay_enabled=False,
        log_level="WARNING",
    )
    await db.dispose()
    app = create_app(settings)
    latencies: list[float] = []
    admin = auth_headers("loyalty:admin")
    till = auth_headers("loyalty:redeem")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as api:
            body = {"name": "Coffee", "points_cost": 1}
            (await api.put("/v1/rewards/coffee", json=body, headers=admin)).raise_for_status()
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(requests):
                queue.put_nowait(i)

            async def client() -> None:
                while not queue.empty():
                    queue.get_nowait()
                    member = f"m-{random.randrange(member_count)}"
                    headers = {**till, "Idempotency-Key": uuid.uuid4().hex}
                    started = time.perf_counter()
                    response = await api.post(
                        f"/v1/members/{member}/redemptions",
                        json={"reward_id": "coffee"},
                        headers=headers,
                    )
                    latencies.append(time.perf_counter() - started)
                    response.raise_for_status()

            began = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            elapsed = time.perf_counter() - began
    return Rate(requests, elapsed), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(db: str, floor: Rate, loyalty: Rate, redemptions: Rate, latencies: list[float]) -> None:
    share = loyalty.per_second / floor.per_second * 100 if floor.per_second else 0.0
    print(f"\nloyalty benchmark — database: {db}, consumer batch: up to 500 records\n")
    print(f"{'measure':<34}{'count':>8}{'seconds':>10}{'per second':>13}")
    print(
        f"{'floor consumer (1 row/event)':<34}{floor.events:>8}{floor.seconds:>10.2f}"
        f"{floor.per_second:>13.0f}"
    )
    print(
        f"{'loyalty consumer (purchases)':<34}{loyalty.events:>8}{loyalty.seconds:>10.2f}"
        f"{loyalty.per_second:>13.0f}   {share:.0f} % of floor"
    )
    print(
        f"{'redemptions (HTTP, concurrent)':<34}{redemptions.events:>8}"
        f"{redemptions.seconds:>10.2f}{redemptions.per_second:>13.0f}"
    )
    print(
        f"  redemption latency: p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )


async def main(db: str, purchases: int, customers: int, redemptions: int, clients: int) -> None:
    port = tansu.free_port()
    broker = tansu.start(port)
    maker = DatabaseMaker(Path(tempfile.mkdtemp(prefix="kw-bench-loyalty-")), backend=db)
    try:
        floor, loyalty = await run_consumers(f"127.0.0.1:{port}", maker, purchases, customers)
        rate, latencies = await run_redemptions(maker, redemptions, clients)
        report(db, floor, loyalty, rate, latencies)
    finally:
        await maker.drop_all()
        tansu.stop(broker)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--purchases", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--redemptions", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)
    asyncio.run(main(args.db, args.purchases, args.customers, args.redemptions, args.clients))


if __name__ == "__main__":
    cli()
