"""Profile benchmark: `PYTHONPATH=. .venv/bin/python -m bench.profile [--db postgres] [parts]`.

Starts its own broker, then prints (parts: throughput staleness reads rebuild):
  throughput  interactions/s the profile consumer sustains (the real runner and
              handlers, the real database; relay off);
  staleness   view staleness p50/p99 under a steady purchase rate (default 200/s):
              event time to first visible in GET /v1/customers/{id}, for a sample
              of purchases, with the whole app (consumer, relay) running in-process;
  reads       p99 of GET /v1/customers/{id} at a steady request rate (default 500/s,
              open loop, in-process ASGI client) over a table of --table customers
              (PostgreSQL only: seeded with INSERT … SELECT generate_series);
  rebuild     the rebuild check at scale: a generated history of --history customers
              is applied live through the handlers and replayed from the topics by
              the rebuild command; prints both times and whether the views are equal.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.profile import consumers
from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS, create_app
from services.profile.rebuild import rebuild
from shared.consumer import ConsumerRunner
from shared.db import Database
from shared.events import Event
from shared.events.interactions import InteractionRecorded
from shared.kafka import create_topics, make_consumer
from shared.migrations import upgrade_async
from shared.plumbing import processed_events
from tests.helpers import TEST_SECRET, auth_headers
from tests.profile.builders import purchase
from tests.profile.history import customer_ids, history
from tools import broker as tansu
from tools.databases import DatabaseMaker

TOPICS = consumers.INPUT_TOPICS


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def send_all(bootstrap: str, prefix: str, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(prefix + e.TOPIC, e.to_json(), key=e.key) for e in events]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def migrated(maker: DatabaseMaker) -> str:
    url = await maker("profile")
    await upgrade_async(MIGRATIONS, url)
    return url


async def count_processed(url: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            query = select(func.count()).select_from(processed_events)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


# --- throughput -------------------------------------------------------------------------


def interaction(cid: str) -> InteractionRecorded:
    data = {"channel": "web", "kind": "page_view", "summary": "viewed"}
    return InteractionRecorded.create(subject=cid, source="/bench", data=data)


async def throughput(bootstrap: str, maker: DatabaseMaker, count: int, customers: int) -> None:
    prefix = f"b{uuid.uuid4().hex[:6]}."
    settings = ProfileSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, service_name="bench-profile"
    )
    await create_topics(settings, [prefix + t for t in TOPICS], partitions=4)
    await send_all(bootstrap, prefix, [interaction(f"c{i % customers}") for i in range(count)])
    url = await migrated(maker)
    db = Database(url)
    runner = ConsumerRunner(
        db=db,
        consumer=make_consumer(settings, prefix + "customer.interactions"),
        service="bench-profile",
        topic_prefix=prefix,
        handlers=consumers.handlers(settings),
    )
    task = asyncio.create_task(runner.run())
    started = time.perf_counter()
    while (done := await count_processed(url)) < count:
        started = time.perf_counter() if done == 0 else started
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    runner.stop()
    await task
    await db.dispose()
    print(f"throughput: {count} interactions, {customers} customers: {count / elapsed:.0f}/s")


# --- staleness --------------------------------------------------------------------------


async def staleness(bootstrap: str, maker: DatabaseMaker, rate: int, seconds: int) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}."
    settings = ProfileSettings(
        auth_secret=TEST_SECRET,
        database_url=await migrated(maker),
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_ms=50,
    )
    await create_topics(settings, [prefix + t for t in TOPICS], partitions=4)
    app = create_app(settings)
    lags: list[float] = []
    transport = httpx.ASGITransport(app=app)
    headers = auth_headers("customers:read")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client,
    ):
        await asyncio.sleep(3)  # consumer group join
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        watchers = await _drive(producer, client, prefix, rate, seconds, lags)
        await asyncio.gather(*watchers)
        await producer.stop()
    p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
    sampled = rate * seconds // 10 + (1 if rate * seconds % 10 else 0)
    print(
        f"staleness at {rate} purchases/s for {seconds}s ({len(lags)} of {sampled} sampled "
        f"seen within {WATCH_LIMIT_SECONDS:.0f}s): "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )


async def _drive(
    producer: AIOKafkaProducer,
    client: httpx.AsyncClient,
    prefix: str,
    rate: int,
    seconds: int,
    lags: list[float],
) -> list[asyncio.Task[None]]:
    watchers, start = [], time.perf_counter()
    for n in range(rate * seconds):
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        event = purchase(f"s{n}", when=datetime.now(UTC))
        await producer.send(prefix + event.TOPIC, event.to_json(), key=event.key)
        if n % 10 == 0:
            watchers.append(asyncio.create_task(_watch(client, event, lags)))
    return watchers


WATCH_LIMIT_SECONDS = 60.0


async def _watch(client: httpx.AsyncClient, event: Event, lags: list[float]) -> None:
    """Poll until visible; after WATCH_LIMIT_SECONDS the sample counts as not seen."""
    while (await client.get(f"/v1/customers/{event.subject}")).status_code != 200:
        if (datetime.now(UTC) - event.time).total_seconds() > WATCH_LIMIT_SECONDS:
            return
        await asyncio.sleep(0.05)
    lags.append((datetime.now(UTC) - event.time).total_seconds())


# --- reads ---------------------------------------------------------------------------------

SEED = """
INSERT INTO customers (customer_id, name, name_folded, email, order_count, gross_spend,
    refunded_spend, spend_currency, open_complaints, created_at, updated_at)
SELECT 'c' || g, 'Name ' || g, 'name ' || g, 'c' || g || '@example.com', g % 20,
    (g % 500) * 1.5, 0, 'EUR', 0, now(), now()
FROM generate_series(1, :n) AS g
"""


async def reads(maker: DatabaseMaker, table: int, rate: int, seconds: int) -> None:
    url = await migrated(maker)
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.execute(text(SEED), {"n": table})
        await conn.execute(text("ANALYZE customers"))
    await engine.dispose()
    settings = ProfileSettings(
        auth_secret=TEST_SECRET, database_url=url, relay_enabled=False, consumer_enabled=False
    )
    app = create_app(settings)
    latencies: list[float] = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers=auth_headers("customers:read"),
        ) as client,
    ):
        tasks, start = [], time.perf_counter()
        for n in range(rate * seconds):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            cid = f"c{(n * 7919) % table + 1}"
            tasks.append(asyncio.create_task(_timed_get(client, cid, latencies)))
        await asyncio.gather(*tasks)
        achieved = len(latencies) / (time.perf_counter() - start)
    print(
        f"reads: {table} customers, offered {rate}/s for {seconds}s (achieved {achieved:.0f}/s): "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
    )


async def _timed_get(client: httpx.AsyncClient, cid: str, latencies: list[float]) -> None:
    began = time.perf_counter()
    response = await client.get(f"/v1/customers/{cid}")
    response.raise_for_status()
    latencies.append(time.perf_counter() - began)


# --- rebuild at scale -----------------------------------------------------------------------


async def rebuild_check(bootstrap: str, maker: DatabaseMaker, customers: int) -> None:
    from tests.profile.support import HANDLERS
    from tests.profile.test_rebuild import snapshot

    prefix = f"r{uuid.uuid4().hex[:6]}."
    settings = ProfileSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
    await create_topics(settings, [prefix + t for t in TOPICS], partitions=4)
    ids = customer_ids(customers)
    events = history(ids)
    await send_all(bootstrap, prefix, events)
    live_url, fresh_url = await migrated(maker), await maker("profile")
    live = Database(live_url)
    started = time.perf_counter()
    for i in range(0, len(events), 100):
        async with live.unit_of_work() as session:
            for event in events[i : i + 100]:
                await HANDLERS[type(event)](session, event)
    live_s = time.perf_counter() - started
    started = time.perf_counter()
    await rebuild(settings, target_url=fresh_url, records_from=live_url)
    rebuild_s = time.perf_counter() - started
    rebuilt = Database(fresh_url)
    equal = await snapshot(live, ids) == await snapshot(rebuilt, ids)
    await live.dispose()
    await rebuilt.dispose()
    print(
        f"rebuild: {customers} customers, {len(events)} events: live {live_s:.1f}s, "
        f"rebuild {rebuild_s:.1f}s, views equal: {equal}"
    )


async def main(args: Any) -> None:
    port = tansu.free_port()
    folder = Path(tempfile.mkdtemp())
    proc = tansu.start(port, log_path=folder / "broker.log")
    maker = DatabaseMaker(folder, backend=args.db)
    bootstrap = f"127.0.0.1:{port}"
    try:
        if "throughput" in args.parts:
            await throughput(bootstrap, maker, args.interactions, args.customers)
        if "staleness" in args.parts:
            await staleness(bootstrap, maker, args.rate, args.seconds)
        if "reads" in args.parts and args.db == "postgres":
            await reads(maker, args.table, args.read_rate, args.seconds)
        if "rebuild" in args.parts:
            await rebuild_check(bootstrap, maker, args.history)
    finally:
        await maker.drop_all()
        tansu.stop(proc)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("parts", nargs="*", default=["throughput", "staleness", "reads"])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--interactions", type=int, default=3000)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--rate", type=int, default=200, help="purchases/s for staleness")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--table", type=int, default=100_000)
    parser.add_argument("--read-rate", type=int, default=500)
    parser.add_argument("--history", type=int, default=1000, help="customers for rebuild")
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
