"""SQL statements and CPU per purchase in feedback's consumer: `python -m bench.feedback_sql`.

Deterministic companion to ``bench.pipeline``: no broker. With one active
after-purchase survey, it feeds polls of purchases to the real runner's batch
transaction (``ConsumerRunner._apply_batch``) with feedback's real handler map, for
each poll size in ``--batch`` (default: polls of 10, as at a paced 200 purchases/s,
and of 500, as in a burst), and prints, per size, the statements and the CPU of a
poll (the mean over ``--batches`` polls, by default 2,000 purchases and at least 5
polls, after one warm-up poll) and the statements that reached the driver in the
last poll by shape (``bench.sql_count.Counting``).
By default every purchase is a new customer's (all invited, as in the pipeline);
``--customers N`` cycles over N customers instead (all at the current time, so a
customer's first purchase is invited and the later ones are within the fatigue
window).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select

from bench.sql_count import Counting, batch_runner, item, migrated
from services.feedback.config import FeedbackSettings
from services.feedback.consumers import handlers
from services.feedback.main import MIGRATIONS
from services.feedback.models import Invitation
from services.feedback.service import surveys
from shared.db import Database
from tests.engagement.support import purchase
from tests.feedback.conftest import nps_survey


async def run(db: Database, *, sizes: list[int], batches: int | None, customers: int) -> None:
    config = FeedbackSettings(
        database_url=db.url, survey_token_secret="bench-secret", consumer_enabled=False
    )
    runner = batch_runner(db, handlers(config))
    now = datetime.now(UTC)
    async with db.unit_of_work() as session:
        await surveys.create_survey(session, survey=nps_survey("after-buy"), now=now)
    counting = Counting(db)
    n = 0
    summary: list[str] = []
    for size in sizes:
        polls = batches if batches is not None else max(5, 2000 // size)
        statements = 0
        total_cpu = 0.0
        for b in range(polls + 1):  # the first poll of a size warms up, not counted
            items = []
            for _ in range(size):
                who = f"c-{n % customers}" if customers else f"c-{n}"
                items.append(item(purchase(who, when=now), n))
                n += 1
            wall, cpu = await counting.measure(runner._apply_batch(items))
            if b:
                statements += len(counting.seen)
                total_cpu += cpu
        counting.report(f"last poll of {size}", size, "purchases", wall, cpu)
        summary.append(
            f"poll of {size:>4}: {statements / polls:6.1f} statements, "
            f"{total_cpu * 1000 / polls:7.2f} ms CPU a poll, "
            f"{total_cpu * 1000 / (polls * size):.3f} ms a purchase ({polls} polls)"
        )
    async with db.unit_of_work() as session:
        invited = (await session.execute(select(func.count()).select_from(Invitation))).scalar()
    print(f"\n{n} purchases, {invited} invitations")
    print("\n".join(summary))


async def main(db_kind: str, sizes: list[int], batches: int | None, customers: int) -> None:
    async with migrated(db_kind, "feedback", MIGRATIONS) as db:
        await run(db, sizes=sizes, batches=batches, customers=customers)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--batches",
        type=int,
        default=None,
        help="polls per size (default: 2,000 purchases, at least 5)",
    )
    parser.add_argument(
        "--batch", default="10,500", help="purchases per poll, comma-separated sizes"
    )
    parser.add_argument(
        "--customers", type=int, default=0, help="cycle over N customers (0: each purchase new)"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch.split(",")]
    asyncio.run(main(args.db, sizes, args.batches, args.customers))


if __name__ == "__main__":
    cli()
