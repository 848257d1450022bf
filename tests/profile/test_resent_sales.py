"""A sale counts once per (event source, purchase or refund id), whatever its event id:
a till's retry under a new id, a copy after a merge, a replay after the inbox was pruned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import insert, select

from services.profile.main import MIGRATIONS
from services.profile.models import Customer, SaleKey, SegmentSales, TimelineEntry
from services.profile.service.privacy import erase
from shared.db import Database
from shared.events import Event
from shared.migrations import upgrade, upgrade_async
from tests.conftest import DatabaseFactory
from tests.profile.builders import T0, at, purchase, refund, resent
from tests.profile.support import handle
from tests.profile.test_batching import _database, in_batches, merge_pairs, one_at_a_time, state

pytestmark = pytest.mark.db

NOW = T0 + timedelta(days=30)
BEFORE_SALE_KEYS = "8bb7de5ab7c0"


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    """A profile database with test_batching's four segments (so the rollup is kept)."""
    database = await _database(database_url)
    yield database
    await database.dispose()


async def figures(db: Database, customer_id: str) -> dict[str, Any]:
    """The customer's counters, its purchase and refund entries and the segment rollup."""
    async with db.unit_of_work() as session:
        c = await session.get(Customer, customer_id)
        assert c is not None
        t = TimelineEntry
        entries = await session.execute(
            select(t.kind, t.ref, t.amount)
            .where(t.customer_id == customer_id, t.kind.like("purchase.%"))
            .order_by(t.seq)
        )
        sales = await session.execute(
            select(SegmentSales.segment, SegmentSales.orders, SegmentSales.revenue).order_by(
                SegmentSales.segment, SegmentSales.day
            )
        )
        return {
            "orders": c.order_count,
            "gross": c.gross_spend,
            "refunded": c.refunded_spend,
            "first": c.first_purchase_at,
            "last": c.last_purchase_at,
            "timeline": [(k, r, a) for k, r, a in entries.all()],
            "sales": [(s, n, r) for s, n, r in sales.all()],
        }


def _sale_history() -> tuple[list[Event], list[Event]]:
    """Ann buys 100 and 60 and is refunded 20; then the till re-sends all three under new
    ids, the copies stamped later (a retry's own clock)."""
    bought, more = purchase("ann", "100.00", when=at(0)), purchase("ann", "60.00", when=at(1))
    back = refund("ann", "20.00", when=at(2))
    first: list[Event] = [bought, more, back]
    return first, [resent(e, when=at(5)) for e in first]


def _expected_ann() -> dict[str, Any]:
    return {
        "orders": 2,
        "gross": Decimal("160.00"),
        "refunded": Decimal("20.00"),
        "first": at(0),
        "last": at(1),
    }


async def test_a_sale_resent_under_a_new_event_id_counts_once(db: Database) -> None:
    first, copies = _sale_history()
    await handle(db, *first, *copies)

    got = await figures(db, "ann")
    assert {k: got[k] for k in _expected_ann()} == _expected_ann()
    assert [(k, a) for k, _, a in got["timeline"]] == [
        ("purchase.completed", Decimal("100.00")),
        ("purchase.completed", Decimal("60.00")),
        ("purchase.refunded", Decimal("20.00")),
    ]
    # "loyal" is order_count >= 3 (a double count would have let her in), "spenders"
    # total_spend > 150 (she was at 160, is at 140 net): she is in no segment's rollup.
    assert [s for s in got["sales"] if s[1] or s[2]] == []
    async with db.unit_of_work() as session:
        keys = (await session.execute(select(SaleKey.business_id))).scalars().all()
    assert sorted(keys) == sorted([first[0].data.purchase_id, first[1].data.purchase_id,
                                   first[2].data.refund_id])  # fmt: skip


async def test_the_rollup_counts_a_resent_sale_once(db: Database) -> None:
    """Binh is a "spender" (total_spend > 150) from his first purchase: the re-sent copy
    adds no order or revenue to the segment's day."""
    bought = purchase("binh", "200.00", when=at(0))
    await handle(db, bought)
    await handle(db, resent(bought), resent(bought, when=at(3)))
    got = await figures(db, "binh")
    assert got["orders"] == 1
    assert got["sales"] == [("spenders", 1, Decimal("200.00"))]
    assert len(got["timeline"]) == 1


@pytest.mark.parametrize("size", [1, 3, 50])
async def test_resent_sales_count_once_in_one_poll_and_across_polls(
    db: Database, size: int
) -> None:
    """The copies in the same poll as their originals (size 50), in the next poll (size
    3), or one a poll: what one event at a time leaves, which is counting each once."""
    first, copies = _sale_history()
    await in_batches(db, [*first, copies[0], *copies, copies[2]], size)
    got = await figures(db, "ann")
    assert {k: got[k] for k in _expected_ann()} == _expected_ann()
    assert len(got["timeline"]) == 3


async def test_the_same_id_from_another_source_is_another_sale(db: Database) -> None:
    """Keys are per producer: two stores' tills may both number a sale p-1."""
    here = purchase("chi", "10.00")
    there = resent(here).model_copy(update={"source": "/pos/store-2"})
    await in_batches(db, [here, there], 10)
    got = await figures(db, "chi")
    assert got["orders"] == 2
    assert len(got["timeline"]) == 2


async def test_a_sale_resent_after_a_merge_counts_once(db: Database) -> None:
    """Dao's purchase moved to Em's timeline with the merge; its copy, for either id,
    is still the same sale (in a poll and one event at a time)."""
    bought = purchase("dao", "80.00", when=at(0))
    await handle(db, bought, purchase("em", "5.00", when=at(1)))
    await merge_pairs(db, [("em", "dao")])
    await in_batches(db, [resent(bought), resent(bought, subject="em")], 10)
    await handle(db, resent(bought, when=at(4)))
    got = await figures(db, "em")
    assert got["orders"] == 2
    assert got["gross"] == Decimal("85.00")
    assert got["last"] == at(1)
    assert len(got["timeline"]) == 2


async def test_an_erased_customers_tombstone_counts_a_resent_sale_once(db: Database) -> None:
    """Erasure deletes the timeline; the anonymous counters still see a copy as seen."""
    bought = purchase("fay", "30.00", when=at(0))
    await handle(db, bought)
    async with db.unit_of_work() as session:
        await erase(session, customer_id="fay", reason=None, now=NOW)
    await handle(db, resent(bought))
    got = await figures(db, "fay")
    assert (got["orders"], got["gross"], got["timeline"]) == (1, Decimal("30.00"), [])


async def test_batches_with_resent_sales_leave_what_one_at_a_time_leaves(
    database_url: DatabaseFactory,
) -> None:
    """Purchases and refunds with copies under new ids (in the poll, the next one, and
    after a merge): the batched path and one event at a time agree, segments included."""
    one, batched = await _database(database_url), await _database(database_url)
    try:
        ids = ["g-1", "g-2", "g-3"]
        sales: list[Event] = [
            purchase("g-1", "120.00", when=at(0)),
            purchase("g-1", "50.00", when=at(1)),
            purchase("g-2", "70.00", when=at(1)),
            refund("g-2", "10.00", when=at(2)),
            purchase("g-3", "200.00", when=at(2)),
        ]
        poll = [*sales, resent(sales[0]), resent(sales[3]), *[resent(e) for e in sales]]
        after = [resent(sales[2], subject="g-1"), resent(sales[4], subject="g-3")]
        await one_at_a_time(one, poll)
        await merge_pairs(one, [("g-1", "g-2")])
        await one_at_a_time(one, after)
        await in_batches(batched, poll, 6)
        await merge_pairs(batched, [("g-1", "g-2")])
        await in_batches(batched, after, 10)
        expected, got = await state(one, ids), await state(batched, ids)
        assert got == expected
        view, _ = got["views"]["g-1"]
        assert view["lifetime"]["order_count"] == 3
        assert expected["sales"]
    finally:
        await one.dispose()
        await batched.dispose()


async def test_a_poll_records_its_sale_keys_in_one_statement(db: Database) -> None:
    """The read-ahead records every purchase's and refund's key of the poll at once; the
    handlers then ask no more (copies in the poll included)."""
    sales: list[Event] = [purchase(f"h-{n}", "10.00") for n in range(10)]
    sales += [refund("h-0", "1.00"), resent(sales[1]), resent(sales[2])]
    sent: list[str] = []

    def note(*args: Any) -> None:
        if "sale_keys" in args[2]:
            sent.append(args[2])

    sa_event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    await in_batches(db, sales, 50)
    assert len(sent) == 1
    assert (await figures(db, "h-1"))["orders"] == 1


async def test_the_migration_records_purchases_already_on_timelines(
    database_url: DatabaseFactory,
) -> None:
    """Purchases counted before the upgrade (one of them twice, by the old bug) are keys
    after it: a later copy is not counted again. Refund entries never held their id."""
    url = await database_url("profile")
    await asyncio.to_thread(upgrade, MIGRATIONS, url, BEFORE_SALE_KEYS)
    bought = purchase("ida", "40.00", when=at(0))
    db = Database(url)
    try:
        async with db.unit_of_work() as session:
            await session.execute(insert(Customer).values(
                customer_id="ida", order_count=2, gross_spend=Decimal("80.00"),
                refunded_spend=Decimal(0), spend_currency="EUR",
            ))  # fmt: skip
            for event_id in ("e-1", "e-2"):
                await session.execute(insert(TimelineEntry).values(
                    customer_id="ida", origin_id="ida", occurred_at=at(0),
                    kind="purchase.completed", ref=bought.data.purchase_id,
                    details={"amount": "40.00", "currency": "EUR"}, amount=Decimal("40.00"),
                    currency="EUR", event_source=bought.source, event_id=event_id,
                ))  # fmt: skip
        await upgrade_async(MIGRATIONS, url)
        async with db.unit_of_work() as session:
            keys = (await session.execute(select(SaleKey))).scalars().all()
            assert [(k.event_source, k.kind, k.business_id, k.event_id) for k in keys] == [
                (bought.source, "purchase.completed", bought.data.purchase_id, "e-1")
            ]
        await handle(db, bought)  # a copy under yet another id
        assert (await figures(db, "ida"))["orders"] == 2  # as it was
    finally:
        await db.dispose()
