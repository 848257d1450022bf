"""SQL statements per event in a profile consumer batch: `python -m bench.profile_sql`.

Deterministic companion to ``bench.profile`` and ``bench.pipeline``: no broker, no
clock. Feeds purchases shaped like the pipeline benchmark's (a contact hint, a
store channel; ``--mix`` adds a points.earned per purchase, as loyalty sends back)
to the real runner's batch transaction (``ConsumerRunner._apply_batch``) in batches
of ``--batch`` and counts what reaches the driver (one count per execute or
executemany call, i.e. per round trip), the time spent inside the statements and
the batch's wall and CPU time. ``--segments`` defines that many segments first
(every event then re-evaluates its customer against them). The first batch
creates the customers; the next ones are the steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy import event, func, select

from bench.loyalty_sql import _shape
from services.profile import consumers
from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS
from services.profile.models import Customer, TimelineEntry
from services.profile.service import segments
from shared.consumer import ConsumerRunner, Item
from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.events.common import ContactHint
from shared.events.loyalty import PointsEarned, PointsEarnedData
from shared.migrations import upgrade_async
from tools.databases import DatabaseMaker

SEGMENTS = ('tier = "Gold"', "order_count >= 3", "total_spend > 100", "churn_risk >= 0.6")


def purchase(customer: str, n: int) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=customer,
        source="/bench/pos",
        data=PurchaseCompletedData(
            purchase_id=f"P-{n}",
            channel="store",
            store_id="s-1",
            total={"amount": Decimal("25.50"), "currency": "EUR"},
            customer=ContactHint(name=f"Customer {customer}", email=f"{customer}@bench.test"),
        ),
    )


def earned(customer: str, n: int) -> PointsEarned:
    return PointsEarned.create(
        subject=customer,
        source="keepwell/loyalty",
        data=PointsEarnedData(
            points=25,
            balance=25 * (n + 1),
            reason="base",
            source_event_id=f"E-{n}",
            purchase_id=f"P-{n}",
        ),
    )


def events_for(batch: int, size: int, customers: int, mix: bool) -> list[Event]:
    out: list[Event] = []
    for k in range(size):
        n = batch * size + k
        customer = f"cus-{n % customers}"
        out.append(earned(customer, n) if mix and k % 2 else purchase(customer, n))
    return out


async def count(db: Database, batches: int, size: int, customers: int, mix: bool) -> None:
    runner = ConsumerRunner(
        db=db,
        consumer=None,  # _apply_batch never touches it
        service="bench-sql",
        topic_prefix="",
        handlers=consumers.handlers(ProfileSettings()),
    )
    seen: list[tuple[str, bool]] = []
    waited: Counter[str] = Counter()

    def before(*args: Any) -> None:
        seen.append((args[2], bool(args[5])))
        args[0].info["bench.started"] = time.perf_counter()

    def after(*args: Any) -> None:
        shape = _shape(args[2]) + (" [many]" if args[5] else "")
        waited[shape] += time.perf_counter() - args[0].info.pop("bench.started")

    event.listen(db.engine.sync_engine, "before_cursor_execute", before)
    event.listen(db.engine.sync_engine, "after_cursor_execute", after)
    offset = 0
    for b in range(batches):
        items = []
        for e in events_for(b, size, customers, mix):
            offset += 1
            record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
                "t", 0, offset, 0, 0, e.key, e.to_json(), None, 0, 0, []
            )
            items.append(Item(record, e, None))
        seen.clear()
        waited.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        await runner._apply_batch(items)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        shapes = Counter(_shape(s) + (" [many]" if m else "") for s, m in seen)
        label = "first batch (new customers)" if b == 0 else f"batch {b + 1}"
        print(f"\n{label}: {size} events, {len(seen)} statements, {len(seen) / size:.2f}/event")
        print(
            f"  {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU in this process, "
            f"{sum(waited.values()) * 1000:.0f} ms inside statements"
        )
        for shape, k in shapes.most_common():
            print(f"  {k:>6}  {shape:<44}{waited[shape] * 1000:>8.1f} ms")


async def totals(db: Database) -> None:
    """What the batches left, to check nothing was skipped."""
    async with db.read_only() as session:
        customers, orders, balance = (
            await session.execute(
                select(
                    func.count(), func.sum(Customer.order_count), func.sum(Customer.points_balance)
                )
            )
        ).one()
        entries = (await session.execute(select(func.count()).select_from(TimelineEntry))).scalar()
    print(
        f"\n{customers} customers, {orders} orders, points balances {balance}, "
        f"{entries} timeline entries"
    )


async def main(args: argparse.Namespace) -> None:
    maker = DatabaseMaker(Path(tempfile.mkdtemp(prefix="kw-bench-sql-")), backend=args.db)
    try:
        url = await maker("profile")
        await upgrade_async(MIGRATIONS, url)
        db = Database(url)
        try:
            now = datetime.now(UTC)
            for i, expression in enumerate(SEGMENTS[: args.segments]):
                async with db.unit_of_work() as session:
                    await segments.create_segment(
                        session, name=f"s{i}", expression=expression, now=now
                    )
            await count(db, args.batches, args.batch, args.customers, args.mix)
            await totals(db)
        finally:
            await db.dispose()
    finally:
        await maker.drop_all()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="events per batch")
    parser.add_argument("--customers", type=int, default=125)
    parser.add_argument("--mix", action="store_true", help="every other event a points.earned")
    parser.add_argument("--segments", type=int, default=0, choices=range(len(SEGMENTS) + 1))
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
