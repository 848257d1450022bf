"""The sender's CPU per e-mail: `python -m bench.engagement_sender [--db postgres]`.

Focused companion to ``bench.pipeline`` (where engagement's consumer, sender and relay
share one process and other processes share the machine). Per round it plans
``--messages`` thank-you e-mails through the real consumer batch path (as
``bench.engagement_sql`` does), then runs the real continuous sender (``Sender.run``:
claimer, workers, group commit) against an arrivals SMTP sink in its own process, until
every message is recorded ``sent``. It prints, per round, the CPU this process spent
per e-mail (the sender and the database driver; not the sink's), the statements per
e-mail and the e-mails per second. Only the CPU figures mean much on a busy machine.

With ``--rtt-ms`` the sender reaches the sink through ``bench.latency_proxy``, a link
with that round trip, as to a relay on another machine; then the e-mails per second
show how many round trips a message costs a worker (``--concurrency`` workers).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from sqlalchemy import func, select

from bench.sql_count import Counting, batch_runner, item, migrated
from services.engagement.config import EngagementSettings
from services.engagement.consumers import handlers
from services.engagement.main import MIGRATIONS
from services.engagement.models import SENT, Outreach
from services.engagement.sender import Sender
from shared.db import Database
from tests.engagement.support import customer, purchase
from tools import smtp_sink
from tools.broker import free_port, wait_for_port

OPT_IN = {"email": "opt_in"}
BATCH = 500


async def plan(db: Database, config: EngagementSettings, *, messages: int, round_: int) -> None:
    """``messages`` new customers, each with contact details and one purchase."""
    runner = batch_runner(db, handlers(config))
    offset = round_ * messages * 2
    for start in range(0, messages, BATCH):
        details, items = [], []
        for n in range(start, min(messages, start + BATCH)):
            who = f"r{round_}-c{n}"
            details.append(item(customer(who, email=f"{who}@example.com", consents=OPT_IN), offset))
            items.append(item(purchase(who), offset + 1))
            offset += 2
        await runner._apply_batch(details)
        await runner._apply_batch(items)


async def sent(db: Database) -> int:
    async with db.unit_of_work(notify=False) as session:
        stmt = select(func.count()).select_from(Outreach).where(Outreach.status == SENT)
        return int((await session.execute(stmt)).scalar_one())


async def send_all(db: Database, config: EngagementSettings, *, until: int) -> None:
    task = asyncio.create_task(Sender(db=db, settings=config).run())
    try:
        while await sent(db) < until:
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def start_proxy(target: int, rtt_ms: float) -> tuple[int, subprocess.Popen[bytes]]:
    """``bench.latency_proxy`` in front of ``target``; its port and process."""
    port = free_port()
    args = ["--listen", str(port), "--to", str(target), "--rtt-ms", str(rtt_ms)]
    proxy = subprocess.Popen([sys.executable, "-m", "bench.latency_proxy", *args])
    wait_for_port(port, proc=proxy)
    return port, proxy


async def run(
    db: Database, *, rounds: int, messages: int, rtt_ms: float = 0, concurrency: int = 8
) -> None:
    port = free_port()
    sink = smtp_sink.ArrivalSink(port)
    proxy = None
    if rtt_ms > 0:
        port, proxy = start_proxy(port, rtt_ms)
    config = EngagementSettings(
        smtp_port=port, smtp_timeout_seconds=5, sender_concurrency=concurrency
    )
    counting = Counting(db)
    cpus: list[float] = []
    try:
        for r in range(rounds):
            await plan(db, config, messages=messages, round_=r)
            wall, cpu = await counting.measure(send_all(db, config, until=(r + 1) * messages))
            statements = len(counting.seen) / messages
            cpus.append(cpu * 1000 / messages)
            print(
                f"round {r + 1}: {messages} e-mails, {cpus[-1]:.3f} ms CPU per e-mail, "
                f"{statements:.2f} statements per e-mail, {messages / wall:.0f} e-mails/s",
                flush=True,
            )
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait()
        sink.stop()
    print(f"median {statistics.median(cpus):.3f} ms CPU per e-mail over {rounds} rounds")


async def main(
    db_kind: str, rounds: int, messages: int, rtt_ms: float = 0, concurrency: int = 8
) -> None:
    start = time.perf_counter()
    async with migrated(db_kind, "engagement", MIGRATIONS) as db:
        await run(db, rounds=rounds, messages=messages, rtt_ms=rtt_ms, concurrency=concurrency)
    print(f"({time.perf_counter() - start:.0f} s)")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rtt-ms", type=float, default=0, help="round trip to the sink")
    parser.add_argument("--concurrency", type=int, default=8, help="the sender's workers")
    args = parser.parse_args(argv)
    asyncio.run(main(args.db, args.rounds, args.messages, args.rtt_ms, args.concurrency))


if __name__ == "__main__":
    cli()
