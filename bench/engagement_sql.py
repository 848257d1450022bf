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
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy import event

from bench.loyalty_sql import _shape
from services.engagement.config import EngagementSettings
from services.engagement.consumers import handlers
from services.engagement.main import MIGRATIONS
from services.engagement.sender import Sender
from shared.consumer import ConsumerRunner, Item
from shared.db import Database
from shared.events import Event
from shared.migrations import upgrade_async
from tests.engagement.support import customer, purchase
from tools import smtp_sink
from tools.broker import free_port
from tools.databases import DatabaseMaker

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
OPT_IN = {"email": "opt_in"}


class Counting:
    """Counts what reaches the driver, by shape, and the time spent inside it."""

    def __init__(self, db: Database) -> None:
        self.seen: list[tuple[str, bool]] = []
        self.waited: Counter[str] = Counter()
        self.transactions = 0
        engine = db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)

    def _before(self, *args: Any) -> None:
        self.seen.append((args[2], bool(args[5])))
        args[0].info["bench.started"] = time.perf_counter()

    def _after(self, *args: Any) -> None:
        shape = _shape(args[2]) + (" [many]" if args[5] else "")
        started = args[0].info.pop("bench.started", None)
        if started is not None:
            self.waited[shape] += time.perf_counter() - started

    def _commit(self, *_args: Any) -> None:
        self.transactions += 1

    def reset(self) -> None:
        self.seen.clear()
        self.waited.clear()
        self.transactions = 0

    def report(self, label: str, n: int, unit: str, wall: float, cpu: float) -> None:
        shapes = Counter(_shape(s) + (" [many]" if m else "") for s, m in self.seen)
        per = len(self.seen) / max(1, n)
        print(
            f"\n{label}: {n} {unit}, {len(self.seen)} statements ({per:.2f}/{unit[:-1]}), "
            f"{self.transactions} transactions"
        )
        print(
            f"  {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU in this process, "
            f"{sum(self.waited.values()) * 1000:.0f} ms inside statements"
        )
        for shape, k in shapes.most_common():
            print(f"  {k:>6}  {shape:<52}{self.waited[shape] * 1000:>8.1f} ms")


def _item(e: Event, offset: int) -> Item:
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "t", 0, offset, 0, 0, e.key, e.to_json(), None, 0, 0, []
    )
    return Item(record, e, None)


async def run(db: Database, *, batches: int, size: int, customers: int) -> None:
    port = free_port()
    config = EngagementSettings(smtp_port=port, smtp_timeout_seconds=5)
    runner = ConsumerRunner(
        db=db, consumer=None, service="bench-sql", topic_prefix="", handlers=handlers(config)
    )
    counting = Counting(db)
    offset = 0
    n = 0
    for b in range(batches):
        details, items = [], []
        for _ in range(size):
            who = f"c-{n % customers}"
            known = n >= customers
            details.append(
                _item(
                    customer(who, email=f"{who}@example.com", update=known, consents=OPT_IN),
                    offset,
                )
            )
            items.append(_item(purchase(who), offset + 1))
            n += 1
            offset += 2
        counting.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        await runner._apply_batch(details)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        counting.report(f"contact details batch {b + 1}", size, "events", wall, cpu)
        statements, spent = len(counting.seen), cpu
        counting.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        await runner._apply_batch(items)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        counting.report(f"consumer batch {b + 1}", size, "purchases", wall, cpu)
        statements, spent = statements + len(counting.seen), spent + cpu
        print(
            f"  with its contact details: {statements / size:.2f} statements and "
            f"{spent * 1000 / size:.2f} ms CPU per purchase"
        )
    controller, sink = smtp_sink.start(port)
    try:
        sender = Sender(db=db, settings=config)
        counting.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        rounds = 0
        while await sender.run_once():
            rounds += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        counting.report(f"sender ({rounds} rounds)", len(sink.messages), "messages", wall, cpu)
        print(f"  {len(sink.messages) / wall:.0f} messages/s")
    finally:
        controller.stop()


async def main(db_kind: str, batches: int, size: int, customers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        maker = DatabaseMaker(Path(tmp), backend=db_kind, pg_url=PG_URL)
        url = await maker("engagement")
        await upgrade_async(MIGRATIONS, url)
        db = Database(url)
        try:
            await run(db, batches=batches, size=size, customers=customers)
        finally:
            await db.dispose()
            await maker.drop_all()


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
