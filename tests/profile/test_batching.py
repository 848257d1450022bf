"""The consumer's batches (read-ahead, held writes) leave what one event at a time leaves."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from services.profile import consumers
from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS
from services.profile.models import CustomerChannel, Identity, SegmentMember, SegmentSales
from services.profile.service import segments
from services.profile.service.customers import live_customer
from services.profile.service.merging import merge
from shared.consumer import ConsumerRunner
from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseCompleted, PurchaseRefunded
from shared.events.common import ContactHint
from shared.events.feedback import ComplaintOpened
from shared.migrations import upgrade_async
from shared.plumbing import outbox, processed_events
from tests.conftest import DatabaseFactory
from tests.helpers import batch_items, batch_runner
from tests.profile.builders import (
    at,
    churn,
    interaction,
    outreach,
    points,
    purchase,
    resent,
    tier,
)
from tests.profile.history import DUE, customer_ids, history
from tests.profile.support import HANDLERS
from tests.profile.test_rebuild import snapshot

pytestmark = [pytest.mark.db]

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SEGMENTS = {
    "gold": 'tier = "Gold"',
    "loyal": "order_count >= 3",
    "spenders": "total_spend > 150",
    "unhappy": "open_complaints >= 1 or last_nps <= 4",
}


async def _database(database_url: DatabaseFactory) -> Database:
    url = await database_url("profile")
    await upgrade_async(MIGRATIONS, url)
    db = Database(url)
    for name, expression in SEGMENTS.items():
        async with db.unit_of_work() as session:
            await segments.create_segment(session, name=name, expression=expression, now=NOW)
    return db


@pytest.fixture
async def dbs(database_url: DatabaseFactory) -> AsyncIterator[tuple[Database, Database]]:
    one, batched = await _database(database_url), await _database(database_url)
    yield one, batched
    await one.dispose()
    await batched.dispose()


def _runner(db: Database) -> ConsumerRunner:
    return batch_runner(db, consumers.handlers(ProfileSettings()), service="profile")


async def one_at_a_time(db: Database, events: Sequence[Event]) -> None:
    """The handlers without a batch: each event in its own transaction, each once."""
    seen: set[tuple[str, str]] = set()
    for event in events:
        if (event.source, event.id) in seen:
            continue
        seen.add((event.source, event.id))
        async with db.unit_of_work() as session:
            await HANDLERS[type(event)](session, event)


async def in_batches(db: Database, events: Sequence[Event | bytes], size: int) -> None:
    runner = _runner(db)
    for start in range(0, len(events), size):
        assert await runner._apply_batch(batch_items(events[start : start + size]))


async def merge_pairs(db: Database, pairs: Sequence[tuple[str, str]]) -> None:
    for survivor_id, absorbed_id in pairs:
        async with db.unit_of_work() as session:
            survivor = await live_customer(session, survivor_id)
            absorbed = await live_customer(session, absorbed_id)
            await merge(session, survivor, absorbed, now=NOW)


async def state(db: Database, ids: list[str]) -> dict[str, Any]:
    """Views and timelines, memberships, the segment rollup, identities, channels, and
    what was published (without the ids and times made at handling)."""
    views = await snapshot(db, ids)
    for view, _ in views.values():
        view.pop("created_at")  # the time the row was made
    out: dict[str, Any] = {"views": views}
    async with db.unit_of_work() as session:
        for name, model, order in (
            ("members", SegmentMember, (SegmentMember.segment, SegmentMember.customer_id)),
            ("sales", SegmentSales, (SegmentSales.segment, SegmentSales.day)),
            ("identities", Identity, (Identity.kind, Identity.value)),
            ("channels", CustomerChannel, (CustomerChannel.customer_id, CustomerChannel.channel)),
        ):
            rows = (await session.execute(select(model).order_by(*order))).scalars().all()
            skip = {"entered_at", "created_at"}
            out[name] = [
                {c.key: getattr(r, c.key) for c in model.__table__.columns if c.key not in skip}
                for r in rows
            ]
        published = []
        for row in await session.execute(select(outbox).order_by(outbox.c.id)):
            event = json.loads(row.value) if row.event_type else {}
            data = event.get("data") or {}
            data.pop("merge_id", None)  # random
            published.append((row.event_type, row.key, event.get("subject"), data))
        out["published"] = published
    return out


async def test_batches_leave_the_state_one_event_at_a_time_leaves(
    dbs: tuple[Database, Database],
) -> None:
    """A shuffled history of every kind of event (several per customer in a batch, new
    customers, complaints, segment joins and leaves), redelivered copies, sales re-sent
    under new event ids (in the same batch, a later one, and after the merge for the
    absorbed id), a message that is no event, a merge between batches and events for the
    absorbed ids afterwards."""
    one, batched = dbs
    ids = customer_ids(30)
    first, second = history(ids), history(ids, wave=1)
    rng = random.Random(3)
    sales = [e for e in first if isinstance(e, PurchaseCompleted | PurchaseRefunded)]
    with_copies: list[Event | bytes] = list(first)
    for copy in [*rng.sample(first, 20), *(resent(e) for e in rng.sample(sales, 15))]:
        with_copies.insert(rng.randrange(len(with_copies)), copy)
    with_copies.insert(17, b"junk")
    second = second + [resent(e) for e in rng.sample(sales, 10)]
    rng.shuffle(second)
    pairs = [(ids[0], ids[1]), (ids[2], ids[3]), (ids[0], ids[5])]

    await one_at_a_time(one, [e for e in with_copies if not isinstance(e, bytes)])
    await merge_pairs(one, pairs)
    await one_at_a_time(one, second)

    await in_batches(batched, with_copies, 97)
    await merge_pairs(batched, pairs)
    await in_batches(batched, second + second[:40], 113)  # the copies are in another batch

    expected, got = await state(one, ids), await state(batched, ids)
    assert got["views"] == expected["views"]
    for part in ("members", "sales", "identities", "channels"):
        assert got[part] == expected[part], part
    assert [p for p in got["published"] if p[0]] == expected["published"]
    assert expected["members"]  # the history did exercise them
    assert expected["sales"]
    async with batched.unit_of_work() as session:
        done = await session.scalar(select(func.count()).select_from(processed_events))
    resent_ids = {(e.source, e.id) for e in [*with_copies, *second] if isinstance(e, Event)}
    assert done == len(resent_ids) + 1  # the junk message's dead-letter marker
    survivors = {view["customer_id"]: view for view, _ in got["views"].values()}
    orders = sum(view["lifetime"]["order_count"] for view in survivors.values())
    assert orders == sum(isinstance(e, PurchaseCompleted) for e in [*first, *history(ids, wave=1)])


async def test_several_events_for_a_new_customer_in_one_batch_announce_it_once(
    dbs: tuple[Database, Database],
) -> None:
    _, db = dbs
    bought = purchase("new-1", "60.00", when=at(1))
    events: list[Event] = [
        points("new-1", 10, when=at(0)),
        bought,
        purchase("new-1", "100.00", when=at(2)),
        bought,  # redelivered within the batch
        ComplaintOpened.create(
            subject="new-1",
            source="keepwell/feedback",
            time=at(3),
            data={
                "case_id": "case-1",
                "category": "c",
                "severity": "low",
                "channel": "email",
                "first_response_due": DUE,
                "resolution_due": DUE,
            },
        ),
    ]
    await in_batches(db, events, 10)
    got = await state(db, ["new-1"])
    view, timeline = got["views"]["new-1"]
    assert view["lifetime"]["order_count"] == 2
    assert view["feedback"]["open_complaints"] == 1
    assert len(timeline) == 4
    registered = [p for p in got["published"] if p[0] == "customer.registered"]
    assert len(registered) == 1
    entered = sorted(p[3]["segment"] for p in got["published"] if p[0] == "segment.entered")
    assert entered == ["spenders", "unhappy"]


@pytest.fixture
async def plain(database_url: DatabaseFactory) -> AsyncIterator[tuple[Database, Database]]:
    """Two profile databases without segments (nothing reads mid-batch, so nothing but
    the commit flushes the customers)."""
    dbs = []
    for name in ("profile_plain", "profile_plain_batched"):
        url = await database_url(name)
        await upgrade_async(MIGRATIONS, url)
        dbs.append(Database(url))
    yield dbs[0], dbs[1]
    for db in dbs:
        await db.dispose()


def _updates(db: Database) -> list[int]:
    """The UPDATE customers statements sent from now on: rows in each (1 unless many)."""
    sent: list[int] = []

    def note(*args: Any) -> None:
        if args[2].startswith("UPDATE customers"):
            sent.append(len(args[3]) if args[5] else 1)

    sa_event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    return sent


async def test_a_mixed_batch_writes_its_changed_customers_in_one_statement(
    plain: tuple[Database, Database],
) -> None:
    """The ORM sent one UPDATE per set of changed columns (each kind of event changes
    other columns); the batch sends one for every customer it changed, and leaves what
    one event at a time leaves. A customer the batch did not change is not written."""
    one, batched = plain
    ids = [f"m-{n}" for n in range(6)]
    hint = ContactHint(name="Mia", email="mia@example.com")
    first: list[Event] = [purchase(c, "20.00", when=at(0)) for c in ids]
    second: list[Event] = [
        purchase(ids[0], "30.00", when=at(2)),
        points(ids[1], 40, when=at(2)),
        outreach(ids[2], "thank_you", when=at(2)),
        tier(ids[3], "Gold", when=at(2)),
        points(ids[0], 70, when=at(3)),
        purchase("m-new", "10.00", when=at(3), hint=hint),  # new: announced without a read
        interaction(ids[4], when=at(3)),  # changes no column of the customer
        churn(ids[2], when=at(4)),
    ]
    await one_at_a_time(one, first + second)
    await in_batches(batched, first, 50)
    sent = _updates(batched)
    await in_batches(batched, second, 50)

    assert sent == [5]  # m-0 to m-3 and m-new, in one statement
    all_ids = [*ids, "m-new"]
    assert await state(batched, all_ids) == await state(one, all_ids)
