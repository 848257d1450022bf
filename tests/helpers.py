"""Small helpers the tests share: building events, producing raw bytes, waiting."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from sqlalchemy import select

from shared.auth import SUBJECT_MAX_LENGTH, issue_token
from shared.consumer import ConsumerRunner, Handlers, Item
from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.events.common import ContactHint
from shared.events.profile import (
    CustomerErased,
    CustomerErasedData,
    CustomerMerged,
    CustomerMergedData,
    CustomerUnmerged,
    CustomerUnmergedData,
)
from shared.plumbing import outbox


def purchase(
    customer_id: str,
    amount: str = "100.00",
    *,
    currency: str = "EUR",
    purchase_id: str | None = None,
    name: str | None = None,
    email: str | None = None,
    when: datetime | None = None,
) -> PurchaseCompleted:
    hint = ContactHint(name=name, email=email) if (name or email) else None
    return PurchaseCompleted.create(
        subject=customer_id,
        source="/pos/test-store",
        time=when or datetime.now(UTC),
        data=PurchaseCompletedData(
            purchase_id=purchase_id or f"p-{uuid.uuid4().hex[:10]}",
            channel="store",
            store_id="store-1",
            total={"amount": Decimal(amount), "currency": currency},
            customer=hint,
        ),
    )


def merged_event(survivor: str, merged_id: str) -> CustomerMerged:
    """Profile's ``customer.merged``: ``merged_id`` folds into ``survivor``."""
    return CustomerMerged.create(
        subject=survivor,
        source="keepwell/profile",
        data=CustomerMergedData(merge_id=f"m-{merged_id}", merged_id=merged_id),
    )


def unmerged_event(survivor: str, restored: str) -> CustomerUnmerged:
    """Profile's ``customer.unmerged``: ``restored`` is its own customer again."""
    return CustomerUnmerged.create(
        subject=survivor,
        source="keepwell/profile",
        data=CustomerUnmergedData(merge_id=f"m-{restored}", restored_id=restored),
    )


def erased_event(customer_id: str) -> CustomerErased:
    """Profile's ``customer.erased``."""
    return CustomerErased.create(
        subject=customer_id, source="keepwell/profile", data=CustomerErasedData()
    )


async def produce(bootstrap: str, topic: str, *messages: tuple[bytes | None, bytes]) -> None:
    """Send raw (key, value) pairs with a plain producer, as a POS would."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout: float = 15.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the start (no group) until ``expect`` records or timeout."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(records)
        await asyncio.sleep(0.3)  # catch anything beyond what was expected
        for records in (await consumer.getmany(timeout_ms=200)).values():
            found.extend(records)
    finally:
        await consumer.stop()
    return found


async def wait_until(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def batch_items(events: Sequence[Event | bytes], topic: str = "t") -> list[Item]:
    """What the consumer runner makes of a poll of ``events`` on one partition (offsets
    from 0); ``bytes`` are a message that is no event, dead-lettered in the batch."""
    items = []
    for offset, e in enumerate(events):
        if isinstance(e, bytes):
            junk: ConsumerRecord[bytes, bytes] = ConsumerRecord(
                topic, 0, offset, 0, 0, b"k", e, None, 0, 0, []
            )
            items.append(Item(junk, None, "not an event"))
            continue
        record = ConsumerRecord(topic, 0, offset, 0, 0, e.key, e.to_json(), None, 0, 0, [])
        items.append(Item(record, e, None))
    return items


# The longest values the event contract allows (Event.source 256, Event.id and the
# purchase / refund ids 128): keys composed from them must fit their columns, which
# PostgreSQL enforces (SQLite does not).
LONGEST_SOURCE = "/pos/" + "s" * 251


def longest(prefix: str, length: int = 128) -> str:
    """``prefix`` padded to ``length`` characters (an id at its contract limit)."""
    return prefix + "x" * (length - len(prefix))


# A token subject at OpenID Connect's limit, which the columns naming who acted must hold.
LONGEST_SUBJECT = longest("https://id.example.com/people/", SUBJECT_MAX_LENGTH)


async def dead_letter_topics(db: Database) -> list[str]:
    """The topics of the dead letters waiting in ``db``'s outbox (no relay runs)."""
    async with db.unit_of_work() as session:
        topics = (await session.execute(select(outbox.c.topic).order_by(outbox.c.id))).scalars()
        return [t for t in topics if t.endswith(".deadletter")]


def batch_runner(db: Database, handlers: Handlers, *, service: str = "test") -> ConsumerRunner:
    """A consumer runner for its batch transaction only (``_apply_batch``): no broker."""
    return ConsumerRunner(
        db=db,
        consumer=None,  # _apply_batch never touches it
        service=service,
        topic_prefix="",
        handlers=handlers,
    )


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


TEST_SECRET = "keepwell-test-secret-not-for-production"


def auth_headers(*scopes: str, subject: str = "test-client", staff: bool = False) -> dict[str, str]:
    """A bearer token signed with the tests' shared secret, carrying ``scopes``."""
    token = issue_token(secret=TEST_SECRET, subject=subject, scopes=scopes, staff=staff)
    return {"Authorization": f"Bearer {token}"}


async def run_poll(db: Database, handlers: Handlers, events: Sequence[Event]) -> None:
    """Hand ``events`` to a consumer runner as one poll: one batch transaction, replayed
    one message at a time (dead-lettering the culprit) if the batch fails."""
    runner = batch_runner(db, handlers)
    assert await runner._process([item.record for item in batch_items(events)])
