"""SQL statements per event in a profile consumer batch: `python -m bench.profile_sql`.

Deterministic companion to ``bench.profile`` and ``bench.pipeline``: no broker, no
clock. Feeds purchases shaped like the pipeline benchmark's (a contact hint, a
store channel) to the real runner's batch transaction (``ConsumerRunner._apply_batch``)
and counts what reaches the driver (one count per execute or executemany call, i.e.
per round trip), the time spent inside the statements and the batch's wall and CPU
time. ``--segments`` defines that many segments first (every event then re-evaluates
its customer against them).

By default (``--pipeline``) it runs polls of 10 and of 500 purchases (``--batch``)
shaped like the pipeline benchmark's: every purchase is a new customer's, and each
poll also holds what loyalty and engagement sent back for the previous poll's
purchases (a points.earned and an outreach.sent each, so a poll of 10 purchases is 30
events). For each size it prints the statements of the last poll by shape, and the
statements and CPU a poll as the mean over ``--batches`` polls (default: 2,000
purchases, at least 5) after a warm-up poll.

``--repeat`` feeds batches of ``--batch`` events round-robin over ``--customers``
(``--mix`` makes every other event a points.earned, as loyalty sends back): the
first batch creates the customers; the next ones are the steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select

from bench.sql_count import Counting, batch_runner, item, migrated
from services.profile import consumers
from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS
from services.profile.models import Customer, TimelineEntry
from services.profile.service import segments
from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.events.common import ContactHint
from shared.events.engagement import OutreachSent, OutreachSentData
from shared.events.loyalty import PointsEarned, PointsEarnedData

SEGMENTS = ('tier = "Gold"', "order_count >= 3", "total_spend > 100", "churn_risk >= 0.6")


_SALES = itertools.count()  # purchase ids unique over the run: profile counts a sale once


def purchase(customer: str, n: int) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=customer,
        source="/bench/pos",
        data=PurchaseCompletedData(
            purchase_id=f"P-{n}-{next(_SALES)}",
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


def outreach(customer: str, n: int) -> OutreachSent:
    return OutreachSent.create(
        subject=customer,
        source="keepwell/engagement",
        data=OutreachSentData(
            outreach_id=f"O-{n}", journey="thank_you", channel="email", template="thanks"
        ),
    )


def events_for(batch: int, size: int, customers: int, mix: bool) -> list[Event]:
    out: list[Event] = []
    for k in range(size):
        n = batch * size + k
        customer = f"cus-{n % customers}"
        out.append(earned(customer, n) if mix and k % 2 else purchase(customer, n))
    return out


def pipeline_poll(poll: int, size: int) -> list[Event]:
    """``size`` purchases of new customers, then the points and thank-you of the previous
    poll's purchases (the pipeline's steady state)."""
    out: list[Event] = [purchase(f"cus-{size}-{poll}-{k}", poll * size + k) for k in range(size)]
    if poll:
        for k in range(size):
            n = (poll - 1) * size + k
            out += [
                earned(f"cus-{size}-{poll - 1}-{k}", n),
                outreach(f"cus-{size}-{poll - 1}-{k}", n),
            ]
    return out


class Poller:
    def __init__(self, db: Database) -> None:
        self.runner = batch_runner(db, consumers.handlers(ProfileSettings()))
        self.counting = Counting(db)
        self.offset = 0

    async def apply(self, events: list[Event]) -> tuple[float, float]:
        """One poll; its wall and CPU seconds (the statements are in ``counting``)."""
        items = [item(e, self.offset + k) for k, e in enumerate(events, 1)]
        self.offset += len(events)
        return await self.counting.measure(self.runner._apply_batch(items))


async def count(db: Database, batches: int, size: int, customers: int, mix: bool) -> None:
    poller = Poller(db)
    for b in range(batches):
        wall, cpu = await poller.apply(events_for(b, size, customers, mix))
        label = "first batch (new customers)" if b == 0 else f"batch {b + 1}"
        poller.counting.report(label, size, "events", wall, cpu)


async def pipeline(db: Database, sizes: list[int], batches: int | None) -> None:
    poller = Poller(db)
    summary = []
    for size in sizes:
        polls = batches if batches is not None else max(5, 2000 // size)
        statements, total_cpu, events = 0, 0.0, 0
        for p in range(polls + 1):  # poll 0 has no points or thank-yous: a warm-up
            poll = pipeline_poll(p, size)
            wall, cpu = await poller.apply(poll)
            if p:
                statements += len(poller.counting.seen)
                total_cpu += cpu
                events += len(poll)
        poller.counting.report(
            f"last poll of {size} purchases (with points and thank-yous)",
            len(poll), "events", wall, cpu,
        )  # fmt: skip
        summary.append(
            f"poll of {size:>4} purchases: {statements / polls:6.1f} statements, "
            f"{total_cpu * 1000 / polls:7.2f} ms CPU a poll, "
            f"{total_cpu * 1000 / (polls * size):.3f} ms a purchase "
            f"({events // polls} events a poll, {polls} polls)"
        )
    await totals(db)
    print("\n".join(summary))


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
    async with migrated(args.db, "profile", MIGRATIONS) as db:
        now = datetime.now(UTC)
        for i, expression in enumerate(SEGMENTS[: args.segments]):
            async with db.unit_of_work() as session:
                await segments.create_segment(session, name=f"s{i}", expression=expression, now=now)
        sizes = [int(b) for b in args.batch.split(",")]
        if args.repeat:
            await count(db, args.batches or 3, sizes[0], args.customers, args.mix)
            await totals(db)
        else:
            await pipeline(db, sizes, args.batches)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeat", action="store_true", help="round-robin over --customers")
    parser.add_argument("--batches", type=int, default=None, help="polls (per size)")
    parser.add_argument(
        "--batch", default="10,500", help="purchases per poll (--repeat: events), comma-separated"
    )
    parser.add_argument("--customers", type=int, default=125, help="with --repeat")
    parser.add_argument(
        "--mix", action="store_true", help="with --repeat: every other event a points.earned"
    )
    parser.add_argument("--segments", type=int, default=0, choices=range(len(SEGMENTS) + 1))
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
