"""Inspect and redrive a service's dead letters.

    python -m tools.deadletters list loyalty [--limit 50]
    python -m tools.deadletters redrive loyalty [--dry-run]

`list` prints each parked message: where it came from, why it was parked, and its
first bytes. `redrive` re-publishes every parked message not yet redriven to the
topic it came from (original key, value and headers, plus `x-redriven-from`), so
after a fix it is consumed again; the consuming service's de-duplication makes a
repeated redrive harmless. Progress is kept in the consumer group
`<prefix><service>.redrive`, so each message is redriven once.

A service's outbox relay publishes at least once, so a relay killed between its send
and its delete parks the same message twice. Such copies name the same original
position (`x-original-topic`, `-partition`, `-offset`): `list` shows each message once
with its copies' offsets, and `redrive` re-publishes it once.

Broker settings come from the service's own settings (e.g. LOYALTY_KAFKA_…).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.config import ServiceSettings
from shared.events import dead_letter_topic
from shared.kafka import connection_options
from tools.stack import SERVICE_NAMES, settings_for

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def describe(record: Record, copies: Sequence[Record] = ()) -> str:
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
    origin = (
        f"{headers.get('x-original-topic')}[{headers.get('x-original-partition')}]"
        f"@{headers.get('x-original-offset')}"
    )
    preview = (record.value or b"")[:120].decode("utf-8", "replace")
    also = f"\n  copies: offsets {', '.join(str(c.offset) for c in copies)}" if copies else ""
    return (
        f"offset {record.offset}  from {origin}  at {headers.get('x-failed-at')}\n"
        f"  reason: {headers.get('x-dead-letter-reason')}\n  value:  {preview!r}{also}"
    )


def origin(record: Record) -> tuple[bytes, bytes, bytes] | None:
    """The position of the message a dead letter parks, if it names one (copies share it)."""
    headers = dict(record.headers)
    topic, offset = headers.get("x-original-topic"), headers.get("x-original-offset")
    if not topic or offset is None:
        return None
    return topic, headers.get("x-original-partition", b""), offset


def distinct(records: Sequence[Record]) -> list[tuple[Record, list[Record]]]:
    """Each parked message once, in the order first parked, with its later copies."""
    groups: dict[object, tuple[Record, list[Record]]] = {}
    for record in records:
        key = origin(record) or (record.partition, record.offset)
        if key in groups:
            groups[key][1].append(record)
        else:
            groups[key] = (record, [])
    return list(groups.values())


async def read_all(consumer: AIOKafkaConsumer, limit: int | None) -> list[Record]:
    found: list[Record] = []
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
    letters = distinct(records)
    for record, copies in letters:
        print(describe(record, copies))
    twice = len(records) - len(letters)
    print(
        f"{len(letters)} dead letter(s) shown from {topic}"
        + (f" (and {twice} copies of them, listed with each)" if twice else "")
    )
    return len(letters)


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
        letters = distinct(records)
        for record, copies in letters:
            await _republish(producer, record, topic, dry_run=dry_run)
            for copy in copies:
                print(f"offset {copy.offset}: a copy of offset {record.offset}, not redriven")
        if records and not dry_run:
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    print(f"{'would redrive' if dry_run else 'redrove'} {len(letters)} message(s) from {topic}")
    return len(letters)


async def _republish(
    producer: AIOKafkaProducer, record: Record, source: str, *, dry_run: bool
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
