"""Inspect and redrive a service's dead letters.

    python -m tools.deadletters list loyalty [--limit 50]
    python -m tools.deadletters redrive loyalty [--dry-run]

`list` prints each parked message: where it came from, why it was parked, and its
first bytes. `redrive` re-publishes every parked message not yet redriven to the
topic it came from (original key, value and headers, plus `x-redriven-from`), so
after a fix it is consumed again; the consuming service's de-duplication makes a
repeated redrive harmless. Progress is kept in the consumer group
`<prefix><service>.redrive`, so each message is redriven once.

Broker settings come from the service's own settings (e.g. LOYALTY_KAFKA_…).
"""

from __future__ import annotations

import argparse
import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.config import ServiceSettings
from shared.events import dead_letter_topic
from shared.kafka import connection_options
from tools.stack import SERVICE_NAMES, settings_for


def describe(record: ConsumerRecord[bytes, bytes]) -> str:
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
    origin = (
        f"{headers.get('x-original-topic')}[{headers.get('x-original-partition')}]"
        f"@{headers.get('x-original-offset')}"
    )
    preview = (record.value or b"")[:120].decode("utf-8", "replace")
    return (
        f"offset {record.offset}  from {origin}  at {headers.get('x-failed-at')}\n"
        f"  reason: {headers.get('x-dead-letter-reason')}\n  value:  {preview!r}"
    )


async def read_all(
    consumer: AIOKafkaConsumer, limit: int | None
) -> list[ConsumerRecord[bytes, bytes]]:
    found: list[ConsumerRecord[bytes, bytes]] = []
    while limit is None or len(found) < limit:
        batch = await consumer.getmany(timeout_ms=1000)
        if not batch:
            return found
        for records in batch.values():
            found.extend(records)
    return found[:limit]


async def list_letters(settings: ServiceSettings, limit: int) -> int:
    topic = settings.topic(dead_letter_topic(settings.service_name))
    consumer = AIOKafkaConsumer(
        topic,
        **connection_options(settings),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records = await read_all(consumer, limit)
    finally:
        await consumer.stop()
    for record in records:
        print(describe(record))
    print(f"{len(records)} dead letter(s) shown from {topic}")
    return len(records)


async def redrive(settings: ServiceSettings, *, dry_run: bool) -> int:
    topic = settings.topic(dead_letter_topic(settings.service_name))
    consumer = AIOKafkaConsumer(
        topic,
        **connection_options(settings),
        group_id=f"{settings.consumer_group()}.redrive",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(**connection_options(settings), acks="all")
    await consumer.start()
    await producer.start()
    try:
        records = await read_all(consumer, None)
        for record in records:
            await _republish(producer, record, topic, dry_run=dry_run)
        if records and not dry_run:
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    print(f"{'would redrive' if dry_run else 'redrove'} {len(records)} message(s) from {topic}")
    return len(records)


async def _republish(
    producer: AIOKafkaProducer, record: ConsumerRecord[bytes, bytes], source: str, *, dry_run: bool
) -> None:
    headers = dict(record.headers)
    original = headers.get("x-original-topic", b"").decode()
    if not original:
        raise ValueError(f"offset {record.offset} of {source} has no x-original-topic header")
    print(f"{'(dry run) ' if dry_run else ''}offset {record.offset} → {original}")
    if dry_run:
        return
    kept = [(k, v) for k, v in record.headers if not k.startswith("x-")]
    kept.append(("x-redriven-from", f"{source}@{record.offset}".encode()))
    await producer.send_and_wait(original, value=record.value, key=record.key, headers=kept)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("list", "redrive"))
    parser.add_argument("service", choices=SERVICE_NAMES)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    settings = settings_for(args.service)
    if args.command == "list":
        asyncio.run(list_letters(settings, args.limit))
    else:
        asyncio.run(redrive(settings, dry_run=args.dry_run))


if __name__ == "__main__":
    main()
