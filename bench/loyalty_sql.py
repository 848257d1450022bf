"""SQL statements per purchase in a loyalty consumer batch: `python -m bench.loyalty_sql`.

Deterministic companion to ``bench.loyalty``: no broker, no clock. Builds the same
purchases as the benchmark, feeds them to the real runner's batch transaction
(``ConsumerRunner._apply_batch``) in batches of ``--batch`` and counts what reaches
the driver (a ``before_cursor_execute`` listener: one count per execute or
executemany call, i.e. per round trip on asyncpg), the time spent inside them
(from sending to the driver's answer: round trip and server work, plus any wait for
this process's CPU), and the batch's wall and CPU time. The first batch creates the
members; the next ones are the steady state the benchmark mostly measures.
``--floor`` counts the benchmark's floor consumer instead; ``--rules`` publishes a
rule set with tiers or a budgeted campaign first (the benchmark runs on the default).

``--details`` makes each poll look like the pipeline's: after its purchases, one
``customer.registered`` (no birthday) for each of as many purchases before it, as
profile announces every new customer and loyalty sees the announcement a poll later. The
summary at the end gives, per poll size, the statements and the median CPU of the
polls after the first.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.loyalty import floor_database, floor_handler, loyalty_database, make_purchase
from bench.sql_count import Counting, batch_runner, item
from services.loyalty import consumers
from services.loyalty.config import LoyaltySettings
from services.loyalty.service import rulebook
from services.loyalty.service.rules import RuleSetBody
from shared.consumer import Handlers
from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseCompleted
from shared.events.profile import CustomerDetails, CustomerRegistered
from tools.databases import DatabaseMaker


def registered(customer: str) -> CustomerRegistered:
    """What profile announces for a customer it sees first (the pipeline's: no birthday)."""
    return CustomerRegistered.create(
        subject=customer,
        source="keepwell/profile",
        data=CustomerDetails(name=f"Customer {customer}", email=f"{customer}@bench.test"),
    )


async def count(
    db: Database,
    handlers: Handlers,
    batches: int,
    sizes: list[int],
    customers: int,
    details: bool = False,
) -> None:
    runner = batch_runner(db, handlers)
    counting = Counting(db)
    n = 0
    announced: list[str] = []  # the customers of the polls before, for --details
    summary: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for b in range(batches):
        events: list[Event] = []
        size = sizes[b % len(sizes)]
        for _ in range(size):
            events.append(make_purchase(f"cus-{n % customers}", n))
            n += 1
        if details:  # the latest customers before this poll (the first poll's: not members)
            earlier = announced[-size:] or [f"new-{e.subject}" for e in events]
            announced += [e.subject for e in events]
            events += [registered(c) for c in earlier]
        items = [item(e, offset) for offset, e in enumerate(events)]
        wall, cpu = await counting.measure(runner._apply_batch(items))
        label = "first batch (new members)" if b == 0 else f"batch {b + 1}"
        extra = f" + {len(items) - size} customer details" if details else ""
        counting.report(f"{label}{extra}", size, "purchases", wall, cpu)
        if b:
            summary[size].append((len(counting.seen), cpu))
    if summary:
        print("\nsummary (polls after the first):")
    for size, polls in sorted(summary.items()):
        statements = statistics.median(s for s, _ in polls)
        cpu = statistics.median(c for _, c in polls) * 1000
        print(
            f"  {size:>5} purchases{' + details' if details else ''}: {len(polls)} polls, "
            f"{statements:g} statements, median {cpu:.1f} ms CPU a poll, "
            f"{cpu / size:.3f} ms a purchase"
        )


# ``--rules``: rule sets with what costs statements per purchase beyond the default.
RULES: dict[str, dict[str, Any]] = {
    "default": {},
    "tiers": {"tiers": [{"name": "Member", "threshold": 0}, {"name": "Gold", "threshold": 500}]},
    "budget": {
        "campaigns": [
            {
                "id": "c1",
                "name": "Bonus",
                "starts_at": "2000-01-01T00:00:00Z",
                "ends_at": "2100-01-01T00:00:00Z",
                "bonus_points": 1,
                "member_budget": 1000,
            }
        ]
    },
}


async def main(
    db_kind: str,
    floor: bool,
    batches: int,
    sizes: list[int],
    customers: int,
    rules: str,
    details: bool = False,
) -> None:
    maker = DatabaseMaker(Path(tempfile.mkdtemp(prefix="kw-bench-sql-")), backend=db_kind)
    try:
        if floor:
            db = await floor_database(maker)
            handlers: Handlers = {PurchaseCompleted: floor_handler}
        else:
            db = await loyalty_database(maker)
            settings = LoyaltySettings()
            handlers = consumers.handlers(settings)
            if RULES[rules]:
                async with db.unit_of_work() as session:
                    body = RuleSetBody.model_validate(RULES[rules])
                    await rulebook.publish(session, body=body, operator="bench", settings=settings)
        try:
            await count(db, handlers, batches, sizes, customers, details)
        finally:
            await db.dispose()
    finally:
        await maker.drop_all()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument(
        "--batch",
        type=lambda v: [int(n) for n in v.split(",")],
        default=[500],
        help="purchases per batch; a list (500,460,40) is used in turn",
    )
    parser.add_argument("--customers", type=int, default=125)
    parser.add_argument("--rules", choices=sorted(RULES), default="default")
    parser.add_argument(
        "--details",
        action="store_true",
        help="each poll also holds a customer.registered for as many purchases before it",
    )
    args = parser.parse_args(argv)
    asyncio.run(
        main(
            args.db,
            args.floor,
            args.batches,
            args.batch,
            args.customers,
            args.rules,
            args.details,
        )
    )


if __name__ == "__main__":
    cli()
