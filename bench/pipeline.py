"""Purchase pipeline benchmark: `make bench` (add `-- --db postgres` for PostgreSQL).

Starts its own broker, SMTP sink and the four services as processes, then prints:
  1. the raw broker floor: produce→consume rate for messages of the same size;
  2. sustained purchases/s through loyalty (purchase → points.earned on Kafka, which
     implies the points are committed and visible over REST) and through engagement
     (purchase → thank-you accepted by SMTP), for a burst of N purchases;
  3. latency percentiles at a fixed offered load (purchase produced → points.earned
     consumed; → e-mail accepted), each purchase stamped with its send time;
  4. peak RSS of each service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.config import ServiceSettings
from shared.events import all_topics, decode
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.events.common import ContactHint
from shared.kafka import create_topics
from tools import broker as tansu
from tools import smtp_sink
from tools.databases import DatabaseMaker
from tools.stack import SERVICE_NAMES, ServiceProcess, migrate, service_env


def make_purchase(customer: str, i: int) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=customer,
        source="/bench/pos",
        data=PurchaseCompletedData(
            purchase_id=f"B-{i}",
            channel="store",
            store_id="s-1",
            total={"amount": Decimal("25.50"), "currency": "EUR"},
            customer=ContactHint(name=f"Customer {customer}", email=f"{customer}@bench.test"),
        ),
    )


@dataclass
class Watch:
    """Consumes loyalty.events and records when each purchase's points arrived."""

    bootstrap: str
    topic: str
    arrived: dict[str, float] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.time()
                    for r in records:
                        event = decode(r.value)
                        self.arrived.setdefault(event.data.source_event_id, now)
        finally:
            await consumer.stop()


async def raw_floor(bootstrap: str, topic: str, n: int, size: int) -> float:
    payload = os.urandom(size // 2).hex().encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await producer.start()
    await consumer.start()
    started = time.time()
    for i in range(n):
        await producer.send(topic, payload, key=str(i % 1000).encode())
    await producer.flush()
    got = 0
    while got < n:
        got += sum(len(r) for r in (await consumer.getmany(timeout_ms=200)).values())
    elapsed = time.time() - started
    await producer.stop()
    await consumer.stop()
    return n / elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def burst(
    bootstrap: str, prefix: str, watch: Watch, sink: smtp_sink.SinkHandler, n: int
) -> tuple[float, float, int]:
    events = [make_purchase(f"burst-{i % 1000}-{uuid.uuid4().hex[:4]}", i) for i in range(n)]
    mails_before = len(sink.messages)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.time()
    for e in events:
        await producer.send(prefix + "commerce.purchases", e.to_json(), key=e.key)
    await producer.flush()
    await producer.stop()
    ids = [e.id for e in events]
    deadline = time.time() + 300
    while not all(i in watch.arrived for i in ids) and time.time() < deadline:
        await asyncio.sleep(0.05)
    points_done = max(watch.arrived.get(i, deadline) for i in ids)
    await asyncio.to_thread(sink.wait_for, mails_before + n, max(1.0, deadline - time.time()))
    mails = len(sink.messages) - mails_before
    mail_done = time.time() if mails >= n else float("nan")
    return n / (points_done - started), n / (mail_done - started), mails


async def paced(
    bootstrap: str, prefix: str, watch: Watch, sink: smtp_sink.SinkHandler, rate: int, seconds: int
) -> tuple[list[float], list[float]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent: dict[str, tuple[float, str]] = {}
    start = time.time()
    for i in range(rate * seconds):
        due = start + i / rate
        if (delay := due - time.time()) > 0:
            await asyncio.sleep(delay)
        customer = f"paced-{uuid.uuid4().hex[:10]}"
        e = make_purchase(customer, i)
        sent[e.id] = (time.time(), f"{customer}@bench.test")
        await producer.send(prefix + "commerce.purchases", e.to_json(), key=e.key)
    await producer.stop()
    await asyncio.sleep(3)
    mail_at = {m.rcpt_tos[0]: m.received_at.timestamp() for m in sink.messages}
    points = [watch.arrived[i] - t for i, (t, _) in sent.items() if i in watch.arrived]
    mails = [mail_at[a] - t for (t, a) in sent.values() if a in mail_at]
    return points, mails


async def main(db: str, n: int, rate: int, seconds: int) -> None:
    port = tansu.free_port()
    broker_proc = tansu.start(port)
    bootstrap = f"127.0.0.1:{port}"
    prefix = "bench."
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
    await create_topics(settings, [*all_topics(prefix), "raw-floor"], partitions=4)
    smtp_port = tansu.free_port()
    controller, sink = smtp_sink.start(smtp_port)
    databases = DatabaseMaker(Path(tempfile.mkdtemp(prefix="kw-bench-")), backend=db)
    services: list[ServiceProcess] = []
    try:
        sample = make_purchase("sample-customer", 1).to_json()
        floor = await raw_floor(bootstrap, "raw-floor", 50_000, len(sample))
        for name in SERVICE_NAMES:
            url = await databases(name)
            await asyncio.to_thread(migrate, name, url)
            env = service_env(
                name,
                bootstrap=bootstrap,
                prefix=prefix,
                database_url=url,
                smtp_port=smtp_port,
                extra={f"{name.upper()}_LOG_LEVEL": "WARNING"},
            )
            services.append(
                ServiceProcess(
                    name=name,
                    port=tansu.free_port(),
                    env=env,
                    log_path=Path("var/bench-logs") / f"{name}.log",
                ).start()
            )
        for s in services:
            await asyncio.to_thread(s.wait_ready)
        watch = Watch(bootstrap, prefix + "loyalty.events")
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch.run(stop))
        points_rate, mail_rate, mails = await burst(bootstrap, prefix, watch, sink, n)
        lat_points, lat_mail = await paced(bootstrap, prefix, watch, sink, rate, seconds)
        stop.set()
        await watcher
        report(
            db,
            len(sample),
            floor,
            n,
            points_rate,
            mail_rate,
            mails,
            rate,
            lat_points,
            lat_mail,
            {s.name: peak_rss_mb(s.proc.pid) for s in services if s.proc},
        )
    finally:
        for s in services:
            s.stop()
        controller.stop()
        tansu.stop(broker_proc)
        await databases.drop_all()


def report(
    db: str,
    size: int,
    floor: float,
    n: int,
    points_rate: float,
    mail_rate: float,
    mails: int,
    rate: int,
    lat_points: list[float],
    lat_mail: list[float],
    rss: dict[str, float],
) -> None:
    print(
        f"\nKeepwell purchase pipeline — database: {db}, message size {size} bytes, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'raw broker produce→consume':<46} {floor:>10,.0f} msg/s")
    print(
        f"{f'burst of {n}: purchase → points (loyalty)':<46} {points_rate:>10,.0f} purchases/s"
        f"   ({points_rate / floor:.1%} of raw)"
    )
    print(
        f"{f'burst of {n}: purchase → e-mail accepted':<46} {mail_rate:>10,.0f} purchases/s"
        f"   ({mails} e-mails)"
    )
    for label, values in (("points", lat_points), ("e-mail", lat_mail)):
        if values:
            print(
                f"{f'at {rate}/s: purchase → {label} latency':<46} p50 {pct(values, 50):7.1f} ms"
                f"  p95 {pct(values, 95):7.1f} ms  p99 {pct(values, 99):7.1f} ms"
                f"  (n={len(values)}, mean {statistics.mean(values) * 1000:.1f} ms)"
            )
        else:
            print(f"at {rate}/s: purchase → {label}: no samples")
    print("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--purchases", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.db, args.purchases, args.rate, args.seconds))
