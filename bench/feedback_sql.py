"""SQL statements and CPU per purchase in feedback's consumer: `python -m bench.feedback_sql`.

Deterministic companion to ``bench.pipeline``: no broker. With one active
after-purchase survey, it feeds ``--batches`` batches of ``--batch`` purchases
(round-robin over ``--customers`` customers, all at the current time, so a
customer's first purchase is invited and the later ones are within the fatigue
window) to the real runner's batch transaction (``ConsumerRunner._apply_batch``)
with feedback's real handler map, and prints the statements that reached the
driver by shape (``bench.engagement_sql.Counting``), with the wall and CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from bench.engagement_sql import PG_URL, Counting, _item
from services.feedback.config import FeedbackSettings
from services.feedback.consumers import handlers
from services.feedback.main import MIGRATIONS
from services.feedback.models import Invitation
from services.feedback.service import surveys
from shared.consumer import ConsumerRunner
from shared.db import Database
from shared.migrations import upgrade_async
from tests.engagement.support import purchase
from tests.feedback.conftest import nps_survey
from tools.databases import DatabaseMaker


async def run(db: Database, *, batches: int, size: int, customers: int) -> None:
    config = FeedbackSettings(
        database_url=db.url, survey_token_secret="bench-secret", consumer_enabled=False
    )
    runner = ConsumerRunner(
        db=db, consumer=None, service="bench-sql", topic_prefix="", handlers=handlers(config)
    )
    now = datetime.now(UTC)
    async with db.unit_of_work() as session:
        await surveys.create_survey(session, survey=nps_survey("after-buy"), now=now)
    counting = Counting(db)
    n = 0
    total_cpu = 0.0
    for b in range(batches):
        items = []
        for _ in range(size):
            items.append(_item(purchase(f"c-{n % customers}", when=now), n))
            n += 1
        counting.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        await runner._apply_batch(items)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        total_cpu += cpu
        counting.report(f"consumer batch {b + 1}", size, "purchases", wall, cpu)
    async with db.unit_of_work() as session:
        invited = (await session.execute(select(func.count()).select_from(Invitation))).scalar()
    print(
        f"\n{n} purchases, {invited} invitations, "
        f"{total_cpu * 1000 / max(1, n):.2f} ms CPU per purchase"
    )


async def main(db_kind: str, batches: int, size: int, customers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        maker = DatabaseMaker(Path(tmp), backend=db_kind, pg_url=PG_URL)
        url = await maker("feedback")
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
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch", type=int, default=250, help="purchases per consumer batch")
    parser.add_argument("--customers", type=int, default=400)
    args = parser.parse_args(argv)
    asyncio.run(main(args.db, args.batches, args.batch, args.customers))


if __name__ == "__main__":
    cli()
