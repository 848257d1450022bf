"""Engagement benchmark: `PYTHONPATH=. .venv/bin/python -m bench.engagement [--db postgres]`.

In-process (no broker): events go through engagement's handlers one transaction each,
as the consumer runner would; the real sender task delivers to a local aiosmtpd sink.

Prints:
  1. purchase → SMTP accepted latency p50/p99 with purchases arriving at ``--rate``/s for
     ``--seconds`` (one new customer per purchase; thank-you e-mail);
  2. messages/s the sender sustains to the sink, draining ``--backlog`` due messages;
  3. scheduler lag with ``--pending`` (default 100,000) messages pending in the future:
     the time a claim round takes (what a due message waits beyond its due time, on top
     of the poll interval when nothing local woke the sender).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from services.engagement.config import EngagementSettings
from services.engagement.consumers import handlers
from services.engagement.main import MIGRATIONS
from services.engagement.models import Outreach
from services.engagement.sender import Sender
from shared.db import Database
from shared.events import Event
from shared.migrations import upgrade_async
from tests.engagement.support import customer, purchase
from tools import smtp_sink
from tools.broker import free_port
from tools.databases import DatabaseMaker

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _settings(port: int) -> EngagementSettings:
    return EngagementSettings(smtp_port=port, sender_poll_interval_ms=50, smtp_timeout_seconds=5)


async def _handle(db: Database, table: Any, event: Event) -> None:
    async with db.unit_of_work() as session:
        await table[type(event)](session, event)


async def latency(db: Database, port: int, *, rate: int, seconds: float) -> list[float]:
    config = _settings(port)
    table = handlers(config)
    controller, sink = smtp_sink.start(port)
    count = int(rate * seconds)
    prefix = uuid.uuid4().hex[:6]
    for n in range(count):
        await _handle(db, table, customer(f"{prefix}-{n}", email=f"{prefix}-{n}@example.com"))
    task = asyncio.create_task(Sender(db=db, settings=config).run())
    submitted: dict[str, datetime] = {}
    start = time.perf_counter()
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        submitted[f"{prefix}-{n}@example.com"] = datetime.now(UTC)
        await _handle(db, table, purchase(f"{prefix}-{n}"))
    await asyncio.to_thread(sink.wait_for, count, 120)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    controller.stop()
    return [
        (mail.received_at - submitted[mail.rcpt_tos[0]]).total_seconds()
        for mail in sink.messages
        if mail.rcpt_tos[0] in submitted
    ]


async def throughput(db: Database, port: int, *, backlog: int, concurrency: int) -> float:
    config = _settings(port).model_copy(update={"sender_concurrency": concurrency})
    table = handlers(config)
    prefix = uuid.uuid4().hex[:6]
    for n in range(backlog):
        await _handle(db, table, customer(f"{prefix}-{n}", email=f"{prefix}-{n}@example.com"))
        await _handle(db, table, purchase(f"{prefix}-{n}"))
    controller, sink = smtp_sink.start(port)
    sender = Sender(db=db, settings=config)
    start = time.perf_counter()
    while await sender.run_once():
        pass
    elapsed = time.perf_counter() - start
    controller.stop()
    return len(sink.messages) / elapsed


async def scheduler_lag(db: Database, port: int, *, pending: int, rounds: int) -> list[float]:
    later = datetime.now(UTC) + timedelta(days=30)
    rows = [_future_row(n, later) for n in range(pending)]
    async with db.unit_of_work() as session:
        for start in range(0, pending, 5000):
            await session.execute(insert(Outreach), rows[start : start + 5000])
    sender = Sender(db=db, settings=_settings(port))
    timings = []
    for _ in range(rounds):
        began = time.perf_counter()
        await sender.run_once()
        timings.append(time.perf_counter() - began)
    return timings


def _future_row(n: int, due: datetime) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "customer_id": f"future-{n}",
        "journey": "win_back",
        "channel": "email",
        "template": "win_back",
        "dedupe_key": f"bench:{n}",
        "status": "pending",
        "attempts": 0,
        "context": {},
        "due_at": due,
        "created_at": datetime.now(UTC),
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        maker = DatabaseMaker(Path(tmp), backend=args.db, pg_url=PG_URL)
        url = await maker("engagement")
        await upgrade_async(MIGRATIONS, url)
        db = Database(url)
        try:
            if "latency" in args.parts:
                lat = await latency(db, free_port(), rate=args.rate, seconds=args.seconds)
                print(
                    f"purchase→SMTP accepted at {args.rate}/s, {len(lat)} mails: "
                    f"p50 {_pct(lat, 0.5):.1f} ms, p99 {_pct(lat, 0.99):.1f} ms"
                )
            if "throughput" in args.parts:
                rate = await throughput(
                    db, free_port(), backlog=args.backlog, concurrency=args.concurrency
                )
                print(
                    f"sender throughput: {rate:.0f} messages/s ({args.backlog} due, "
                    f"concurrency {args.concurrency})"
                )
            if "lag" in args.parts:
                lag = await scheduler_lag(db, free_port(), pending=args.pending, rounds=20)
                print(
                    f"claim round with {args.pending} pending timers: "
                    f"p50 {statistics.median(lag) * 1000:.1f} ms, max {max(lag) * 1000:.1f} ms"
                )
        finally:
            await db.dispose()
            await maker.drop_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument(
        "--concurrency", type=int, default=8, help="sender_concurrency for the throughput part"
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("latency", "throughput", "lag"),
        default=["latency", "throughput", "lag"],
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
