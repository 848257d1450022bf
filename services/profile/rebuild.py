"""Operator command: rebuild profile's view in a fresh database from the topics.

    python -m services.profile.rebuild --target-url URL [--records-from LIVE_URL]

1. Migrates the (empty) target database.
2. With ``--records-from``, copies what profile itself is the source of and no
   topic carries — the customers' record (id, creation time, contact details,
   preferences, merge and erasure state), identities, consents, merges,
   segment definitions and the staff access log — from the live database.
   Without it, only the projection of the topics is rebuilt.
3. Reads every input topic from the beginning up to its end offsets (with a
   throw-away consumer group: the live group's offsets are untouched) and applies each valid event
   through the service's own handlers, de-duplicated by (source, id) and recorded
   in ``processed_events`` so a later re-delivery is skipped. Purchases and refunds
   are counted once per sale key, as live: ``sale_keys`` is filled by the replay
   (it is a projection of the topics), never copied.
4. Clears the target's outbox: the live service already published what replay
   re-derives.

Stop the live profile consumer first, then point the service at the target.
Settings (broker, topic prefix) come from the usual ``PROFILE_…`` environment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select

from services.profile import consumers
from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS
from services.profile.models import AccessLog, Consent, Customer, Identity, Merge, Segment
from shared.consumer import Handlers
from shared.db import Database
from shared.events import InvalidEvent, decode
from shared.kafka import make_consumer
from shared.migrations import upgrade_async
from shared.plumbing import outbox, processed_events

log = logging.getLogger(__name__)

RECORD_COLUMNS = (
    "customer_id", "created_at", "name", "name_folded", "email", "phone", "language",
    "timezone", "birthday", "contact_seen_at", "preferred_channel", "quiet_start", "quiet_end",
    "merged_into", "erased_at",
)  # fmt: skip
RECORD_TABLES = (Segment, Identity, Consent, Merge)


async def rebuild(
    settings: ProfileSettings, *, target_url: str, records_from: str | None = None
) -> int:
    """Rebuild into ``target_url``; returns the number of events applied."""
    await upgrade_async(MIGRATIONS, target_url)
    target = Database(target_url)
    try:
        if records_from is not None:
            await copy_records(records_from, target)
        applied = await replay(settings, target)
        async with target.unit_of_work() as session:
            await session.execute(delete(outbox))
    finally:
        await target.dispose()
    return applied


async def copy_records(source_url: str, target: Database) -> None:
    source = Database(source_url)
    try:
        async with source.unit_of_work() as read, target.unit_of_work() as write:
            customers = (await read.execute(select(Customer))).scalars().all()
            rows = [{c: getattr(x, c) for c in RECORD_COLUMNS} for x in customers]
            await _insert_all(write, Customer, rows)
            for table in RECORD_TABLES:
                found = (await read.execute(select(table))).scalars().all()
                columns = [c.key for c in table.__table__.columns]
                await _insert_all(
                    write, table, [{c: getattr(x, c) for c in columns} for x in found]
                )
            audit = (await read.execute(select(AccessLog))).mappings().all()
            await _insert_all(write, AccessLog, [dict(r) for r in audit])
    finally:
        await source.dispose()


async def _insert_all(session: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 500):
        await session.execute(insert(table), rows[start : start + 500])


async def replay(settings: ProfileSettings, target: Database) -> int:
    """Read the input topics from the beginning with a throw-away consumer group."""
    group = f"{settings.consumer_group()}-rebuild-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(
        settings.model_copy(update={"kafka_consumer_group": group}),
        *(settings.topic(t) for t in consumers.INPUT_TOPICS),
    )
    await consumer.start()
    try:
        return await _drain(consumer, target, settings)
    finally:
        await consumer.stop()


async def _drain(consumer: Any, target: Database, settings: ProfileSettings) -> int:
    """Apply everything up to (at least) the end offsets, until a poll comes back empty.

    The end offsets are taken once partitions are assigned; records past them are
    applied too (they are events like any other).
    """
    handlers = consumers.handlers(settings)
    seen: set[tuple[str, str]] = set()
    applied, ends = 0, None
    while True:
        batches = await consumer.getmany(timeout_ms=500, max_records=1000)
        for records in batches.values():
            applied += await _apply(target, records, handlers, seen)
        if ends is None and consumer.assignment():
            ends = await consumer.end_offsets(list(consumer.assignment()))
        if not batches and ends is not None and await _reached(consumer, ends):
            return applied


async def _reached(consumer: Any, ends: dict[Any, int]) -> bool:
    return all([await consumer.position(tp) >= end for tp, end in ends.items()])


async def _apply(
    target: Database,
    records: Sequence[Any],
    handlers: Handlers,
    seen: set[tuple[str, str]],
) -> int:
    applied = 0
    async with target.unit_of_work() as session:
        for record in records:
            try:
                event = decode(record.value)
            except InvalidEvent:
                continue  # the live consumer dead-lettered it
            handler = handlers.get(type(event))
            if handler is None or (event.source, event.id) in seen:
                continue
            seen.add((event.source, event.id))
            await handler(session, event)
            await session.execute(
                insert(processed_events).values(
                    source=event.source, event_id=event.id, event_type=event.type
                )
            )
            applied += 1
    return applied


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target-url", required=True, help="SQLAlchemy async URL, empty db")
    parser.add_argument("--records-from", help="the live database, for profile's own records")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    count = asyncio.run(
        rebuild(ProfileSettings(), target_url=args.target_url, records_from=args.records_from)
    )
    log.info("rebuilt profile from %d events", count)


if __name__ == "__main__":
    main()
