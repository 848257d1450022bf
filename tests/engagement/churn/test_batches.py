"""Churn statistics of a consumer batch (``churn.ahead``) end where one event at a time ends:
every churn table, row for row, and every band change published."""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Table, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn import ahead, fitting, scores
from services.engagement.churn.models import (
    ChurnBandChange,
    ChurnCohortMonth,
    ChurnComplaint,
    ChurnCustomer,
    ChurnCustomerCohort,
    ChurnCustomerMonth,
    ChurnMonthBuyers,
    ChurnPurchase,
    ChurnRefund,
)
from services.engagement.consumers import handlers
from shared.consumer import TransientError
from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseCompleted
from shared.events.engagement import ChurnRiskChanged
from tests.engagement.churn.support import (
    CONFIG,
    Clock,
    at,
    band_changes,
    bought,
    customers,
    on_fixed_clock,
    population_events,
    refunded,
)
from tests.engagement.churn.support import handle as handle_churn
from tests.engagement.churn.test_scores import complaint
from tests.engagement.churn.test_unmerge import unmerged
from tests.engagement.support import handle, published, settings
from tests.engagement.test_identity import erased, merged
from tests.engagement.test_prefetch import _in_one_batch, twin  # noqa: F401
from tests.helpers import batch_items, batch_runner

pytestmark = pytest.mark.db

NOW = at(date(2025, 7, 1))
TABLES = (
    ChurnPurchase,
    ChurnRefund,
    ChurnCustomer,
    ChurnComplaint,
    ChurnBandChange,
    ChurnCustomerMonth,
    ChurnCustomerCohort,
    ChurnCohortMonth,
    ChurnMonthBuyers,
)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engagement's handler map with the churn part on a fixed clock (scored_at, event ids)."""
    on_fixed_clock(monkeypatch, NOW)


async def _scored_population(db: Database, population: list[Event]) -> None:
    """A fitted model and everyone scored, so purchases move customers between bands."""
    await handle_churn(db, *population, clock=Clock(NOW), batch=50)
    async with db.unit_of_work() as session:
        await fitting.refit(session, calibration_end=date(2025, 6, 30), config=CONFIG)
    async with db.unit_of_work() as session:
        await scores.rescore_all(session, config=CONFIG, now=NOW)


def _history(rng: random.Random) -> list[Event]:
    """Purchases of scored and new customers over several months and two currencies, the
    same purchase under a second event id, refunds before and after their purchase, a merge,
    an erasure and a complaint, shuffled."""
    day = date(2025, 4, 1)
    events: list[Event] = []
    for i in range(12):  # scored customers buying again (some after months of silence)
        for k in range(rng.randint(1, 3)):
            when = day + timedelta(days=rng.randint(0, 90))
            events.append(bought(f"pop-{i}", when, f"{5 + i}.50", purchase_id=f"pop{i}-{k}"))
    for i in range(6):  # new customers, purchases across months, out of order
        for k in range(rng.randint(2, 5)):
            when = day + timedelta(days=rng.randint(0, 90))
            events.append(bought(f"n-{i}", when, f"{10 + k}.25", purchase_id=f"n{i}-{k}"))
    events += [
        bought("n-0", day - timedelta(days=40), "7.00", purchase_id="n0-usd", currency="USD"),
        bought("n-1", day + timedelta(days=3), "30.00", purchase_id="n1-0"),  # again
        refunded("n-1", "n1-1", "11.25", day + timedelta(days=80)),  # in full
        refunded("n-2", "n2-0", "4.00", day + timedelta(days=80)),  # in part
        refunded("pop-3", "pop3-0", "8.50", day + timedelta(days=91)),
        merged("n-2", "n-3"),
        bought("n-3", day + timedelta(days=60), "9.99", purchase_id="n3-late"),
        merged("n-5", "n-1"),
        bought("n-1", day + timedelta(days=61), "8.75", purchase_id="n1-late"),
        refunded("n-1", "n1-2", "1.25", day + timedelta(days=85)),
        unmerged("n-5", "n-1"),
        erased("n-4"),
        bought("n-4", day + timedelta(days=70), "12.00", purchase_id="n4-after"),
        complaint("pop-5", date(2025, 6, 20), resolved=False),
    ]
    events += rng.sample(events, 4)  # the same events delivered again
    rng.shuffle(events)
    return events + _one_run()


def _one_run() -> list[Event]:
    """A run of purchases (the last batch) where one customer buys several times, in
    several months out of order, a purchase comes twice under two event ids, and a new
    customer's second purchase is in an earlier month (it moves their cohort)."""
    day = date(2025, 6, 10)
    again = bought("pop-7", day, "3.00", purchase_id="r-1")
    return [
        again,
        bought("pop-7", day - timedelta(days=45), "4.00", purchase_id="r-2"),
        bought("x-1", day, "6.00", purchase_id="r-3"),
        bought("pop-7", day, "3.00", purchase_id="r-1"),  # the till sends it again
        bought("x-1", day - timedelta(days=31), "7.00", purchase_id="r-4"),
        bought("pop-7", day + timedelta(days=2), "5.00", purchase_id="r-5"),
        again,
    ]


async def _tables(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    found: dict[str, list[tuple[Any, ...]]] = {}
    async with db.unit_of_work() as session:
        for model in TABLES:
            table: Table = model.__table__  # type: ignore[assignment]
            rows = [tuple(r) for r in (await session.execute(select(table))).all()]
            if model is ChurnBandChange:  # the order of the set-up's re-score is the heap's
                rows = [r[1:] for r in rows]
            found[table.name] = sorted(rows, key=repr)
    return found


async def _band_changes(db: Database) -> list[tuple[str, str, str]]:
    return [
        (e.id, e.subject, e.data.model_dump_json())
        for e in await published(db)
        if isinstance(e, ChurnRiskChanged)
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_churn_tables_of_batches_end_as_one_event_at_a_time(
    db: Database,
    twin: Database,  # noqa: F811
    seed: int,
) -> None:
    config = settings()
    population = population_events(40)
    for database in (db, twin):
        await _scored_population(database, population)
    before = await _band_changes(db)
    rng = random.Random(seed)
    events = _history(rng)
    start, end = 0, len(events) - len(_one_run())
    while start < end:  # batches of 1 to 25 events through the runner
        size = min(rng.randint(1, 25), end - start)
        await _in_one_batch(db, events[start : start + size], config)
        start += size
    await _in_one_batch(db, events[end:], config)
    # the reference: every event alone (no read-ahead), each delivery after the first skipped
    seen: set[str] = set()
    for e in events:
        if e.id not in seen:
            seen.add(e.id)
            await handle(twin, e, config=config)
    batched, alone = await _tables(db), await _tables(twin)
    assert batched == alone
    # the same band changes published, in the same order after the set-up (whose re-score
    # publishes in the order the table's rows come)
    ours, theirs = await _band_changes(db), await _band_changes(twin)
    assert sorted(ours[: len(before)]) == sorted(theirs[: len(before)])
    assert ours[len(before) :] == theirs[len(before) :]
    # and the history did what it is meant to: new purchases, moved bands, rollups
    assert len(ours) > len(before)
    customers = {row[0]: row for row in batched["churn_customers"]}
    assert "n-3" not in customers  # merged into n-2
    assert "n-2" in customers
    assert batched["churn_month_buyers"]


async def test_a_batch_writes_churn_statistics_in_as_many_statements_whatever_its_size(
    db: Database,
) -> None:
    config = settings()
    counts = []
    for size in (10, 40):
        statements: list[str] = []

        def count(*args: Any, into: list[str] = statements) -> None:
            into.append(" ".join(args[2].split()).upper())

        day = date(2025, 5, 1) + timedelta(days=size)
        events: list[Event] = [
            bought(f"b{size}-{n % 7}", day + timedelta(days=n % 3), purchase_id=f"b{size}-{n}")
            for n in range(size)
        ]
        sa_event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        try:
            await _in_one_batch(db, events, config)
        finally:
            sa_event.remove(db.engine.sync_engine, "before_cursor_execute", count)
        counts.append(sum(" CHURN_" in s for s in statements))
    assert counts[0] == counts[1]
    assert counts[0] <= 14


async def test_a_purchase_recorded_meanwhile_makes_the_batch_try_again(db: Database) -> None:
    """Another transaction (a rebalance's previous owner) recorded one of the run's purchases
    after the run read ahead: counting it again would count it twice."""
    config = settings()
    table = dict(handlers(config))
    real = table[PurchaseCompleted]

    async def meanwhile(session: AsyncSession, event: PurchaseCompleted) -> None:
        if event.data.purchase_id == "m-2":
            row = {"purchase_id": "m-3", "customer_id": "c-m", "day": NOW.date()}
            row |= {"occurred_at": NOW, "amount": Decimal(5), "currency": "EUR"}
            await session.execute(insert(ChurnPurchase).values(refunded=Decimal(0), **row))
        await real(session, event)

    table[PurchaseCompleted] = meanwhile
    runner = batch_runner(db, table)
    events: list[Event] = [bought("c-m", NOW.date(), purchase_id=f"m-{n}") for n in (1, 2, 3)]
    with pytest.raises(TransientError):
        await runner._apply_batch(batch_items(events))
    await _in_one_batch(db, events, config)  # tried again: each purchase once
    async with db.unit_of_work() as session:
        row = await session.get(ChurnCustomer, "c-m")
    assert row is not None
    assert row.total_spend == Decimal("60.0000")


async def test_a_rescore_waits_for_a_batch_that_has_read_its_customers(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer batch reads its customers' rows, then writes them when its run ends. A
    re-score coming to one of those rows meanwhile must wait for the batch, not score the
    row the batch is about to replace: each published change starts from the band the one
    before it left. (A change from a band the customer no longer had would start a
    win-back for a customer who has just bought, and be counted twice.)"""
    await _scored_population(db, population_events())
    buyer = sorted(c for c, row in (await customers(db)).items() if row.band == "low")[0]
    changes_before = len(await band_changes(db))

    read, release = asyncio.Event(), asyncio.Event()
    real_write = ahead.Ahead.write

    async def held_write(self: ahead.Ahead, session: AsyncSession, **kwargs: Any) -> None:
        read.set()  # the batch has read its customers' rows
        await release.wait()
        await real_write(self, session, **kwargs)

    monkeypatch.setattr(ahead.Ahead, "write", held_write)
    late = bought(buyer, NOW.date() - timedelta(days=200), purchase_id="late-import")
    buying = asyncio.create_task(_in_one_batch(db, [late], settings()))
    await asyncio.wait_for(read.wait(), 30)

    async def rescore_later() -> None:
        async with db.unit_of_work() as session:  # long silent: everyone moves up
            await scores.rescore_all(session, config=CONFIG, now=NOW + timedelta(days=400))

    rescoring = asyncio.create_task(rescore_later())
    await asyncio.sleep(0.5)  # the re-score reaches the row, or waits for the batch
    release.set()
    await asyncio.gather(buying, rescoring)

    stored = (await customers(db))[buyer].band
    mine = [e for e in (await band_changes(db))[changes_before:] if e.subject == buyer]
    assert mine, "400 days on, the re-score changes the buyer's band"
    bands = ["low"] + [e.data.band for e in mine]
    assert [e.data.previous_band for e in mine] == bands[:-1]
    assert bands[-1] == stored
