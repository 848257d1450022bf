"""SQL statements per purchase on engagement's path to SMTP: `python -m bench.engagement_sql`.

Deterministic companion to ``bench.engagement`` and ``bench.pipeline``: no broker, no
clock. Over ``--customers`` customers, it

1. feeds, per round, a batch of the contact details profile publishes for the
   round's purchases (``customer.registered`` the first time, then
   ``customer.updated``, each with an e-mail consent: in the pipeline every
   purchase of a new customer brings one), then the batch of purchases
   (``--batch``, round-robin over the customers, two items each), each to the real
   runner's batch transaction (``ConsumerRunner._apply_batch``) with engagement's
   real handler map (the two come from different topics, hence different batches);
2. runs sender rounds (``Sender.run_once``) against a local SMTP sink until every
   thank-you is accepted.

Each part prints the statements that reached the driver (one per execute or
executemany call, i.e. a round trip on asyncpg; ``BEGIN``/``COMMIT`` counted as
transactions), by shape, with the time spent inside them and the wall and CPU time.
"""

from __future__ import annotations

import argparse
import asyncio

from bench.sql_count import Counting, batch_runner, item, migrated
from services.engagement.config import EngagementSettings
from services.engagement.consumers import handlers
from services.engagement.main import MIGRATIONS
from services.engagement.sender import Sender
from shared.db import Database
from tests.engagement.support import customer, purchase
from tools import smtp_sink
from tools.broker import free_port

OPT_IN = {"email": "opt_in"}


async def run(db: Database, *, batches: int, size: int, customers: int) -> None:
    port = free_port()
    config = EngagementSettings(smtp_port=port, smtp_timeout_seconds=5)
    runner = batch_runner(db, handlers(config))
    counting = Counting(db)
    offset = 0
    n = 0
    for b in range(batches):
        details, items = [], []
        for _ in range(size):
            who = f"c-{n % customers}"
            known = n >= customers
            details.append(
                item(
                    customer(who, email=f"{who}@example.com", update=known, consents=OPT_IN),
                    offset,
                )
            )
            items.append(item(purchase(who), offset + 1))
            n += 1
            offset += 2
        wall, cpu = await counting.measure(runner._apply_batch(details))
        counting.report(f"contact details batch {b + 1}", size, "events", wall, cpu)
        statements, spent = len(counting.seen), cpu
        wall, cpu = await counting.measure(runner._apply_batch(items))
        counting.report(f"consumer batch {b + 1}", size, "purchases", wall, cpu)
        statements, spent = statements + len(counting.seen), spent + cpu
        print(
            f"  with its contact details: {statements / size:.2f} statements and "
            f"{spent * 1000 / size:.2f} ms CPU per purchase"
        )
    controller, sink = smtp_sink.start(port)
    try:
        sender = Sender(db=db, settings=config)
        rounds = 0

        async def send_all() -> None:
            nonlocal rounds
            while await sender.run_once():
                rounds += 1

        wall, cpu = await counting.measure(send_all())
        counting.report(f"sender ({rounds} rounds)", len(sink.messages), "messages", wall, cpu)
        print(f"  {len(sink.messages) / wall:.0f} messages/s")
    finally:
        controller.stop()


async def main(db_kind: str, batches: int, size: int, customers: int) -> None:
    async with migrated(db_kind, "engagement", MIGRATIONS) as db:
        await run(db, batches=batches, size=size, customers=customers)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--batch", type=int, default=250, help="purchases per consumer batch")
    parser.add_argument("--customers", type=int, default=400)
    args = parser.parse_args(argv)
    asyncio.run(main(args.db, args.batches, args.batch, args.customers))


if __name__ == "__main__":
    cli()
