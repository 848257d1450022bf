"""Tansu's CPU per fetch as a partition grows: `python -m bench.broker_growth`.

Starts a broker, stores ``--stored`` records (450 bytes, like a purchase) in a
4-partition topic, starts ``--consumers`` consumers, each in its own group, reading it
from its end (as the services' groups do), then produces to the same topic at
``--rate`` for ``--seconds`` and prints the broker's CPU over that time, in % of a
core. Run it with ``--stored 0`` and, say, ``--stored 100000`` to compare. With
``--other`` the stored records go to another topic instead.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.pipeline import cpu_seconds
from shared.config import ServiceSettings
from shared.kafka import create_topics
from tools import broker as tansu

VALUE = b"x" * 450


async def main(args: argparse.Namespace) -> None:
    port = tansu.free_port()
    proc = tansu.start(port)
    bootstrap = f"127.0.0.1:{port}"
    live, other = "live", "other"
    try:
        settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
        await create_topics(settings, [live, other], partitions=4)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        for i in range(args.stored):
            await producer.send(other if args.other else live, VALUE, key=str(i).encode())
        await producer.flush()
        consumers = [
            AIOKafkaConsumer(
                live,
                bootstrap_servers=bootstrap,
                group_id=f"growth-{c}",
                auto_offset_reset="latest",
                fetch_max_wait_ms=100,
                fetch_min_bytes=args.fetch_min_bytes,
            )
            for c in range(args.consumers)
        ]
        for consumer in consumers:
            await consumer.start()
        stop = asyncio.Event()
        consumed = [0]

        async def consume(consumer: AIOKafkaConsumer) -> None:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    consumed[0] += len(records)

        tasks = [asyncio.create_task(consume(c)) for c in consumers]
        await asyncio.sleep(6)  # every group joined and stable
        cpu_before, started = cpu_seconds(proc.pid), time.monotonic()
        for i in range(int(args.rate * args.seconds)):
            if (delay := started + i / args.rate - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            await producer.send(live, VALUE, key=str(i).encode())
        took = time.monotonic() - started
        busy = (cpu_seconds(proc.pid) - cpu_before) / took
        stop.set()
        await asyncio.gather(*tasks)
        for consumer in consumers:
            await consumer.stop()
        await producer.stop()
        where = "another topic" if args.other else "the topic read"
        print(
            f"{args.stored} records stored in {where}, {args.consumers} consumers, "
            f"{args.rate:g}/s for {args.seconds}s: broker {busy:.0%} of a core "
            f"({consumed[0]} records consumed)"
        )
    finally:
        tansu.stop(proc)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--other", action="store_true", help="store them in another topic")
    parser.add_argument("--consumers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--fetch-min-bytes", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse()))
