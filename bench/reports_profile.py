"""Profile's report benchmark: `PYTHONPATH=. .venv/bin/python -m bench.reports_profile`.

Creates a fresh PostgreSQL database (KEEPWELL_TEST_PG_URL's server), migrates it,
and generates the volume directly with INSERT … SELECT generate_series:
--customers customers (default 100,000), --purchases purchase entries (default
2,000,000) spread over the two years before --today plus one refund per 20
purchases, six segments whose memberships cover ~1.7 customers each, and the
segment_sales rollup the service keeps incrementally, filled from them. Then
GET /v1/reports/segments is called --runs times per range through the app
in-process (ASGI), and p50/p95 latency is printed per range. The database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS, create_app
from shared.migrations import upgrade_async
from tests.helpers import TEST_SECRET, auth_headers
from tools.databases import DEFAULT_PG_URL, DatabaseMaker

# (name, expression, share of customers: members are those with id % modulus == 0)
SEGMENTS = (
    ("everyone", "order_count >= 0", 1),
    ("regulars", "order_count >= 20", 3),
    ("gold", "tier = Gold", 10),
    ("at-risk", "churn_risk >= 0.6", 5),
    ("vip", "total_spend > 5000", 100),
    ("lapsed", "last_purchase_before 90d", 7),
)

CUSTOMERS = """
INSERT INTO customers (customer_id, name, name_folded, order_count, gross_spend,
    refunded_spend, spend_currency, open_complaints, created_at, updated_at)
SELECT 'c' || g, 'Name ' || g, 'name ' || g, 20, 1000, 0, 'EUR', 0, now(), now()
FROM generate_series(1, :customers) AS g
"""

# Purchase i belongs to customer (i % customers) + 1, at a pseudo-random second of the
# two years before :today; every 20th purchase is refunded at half its amount a day later.
TIMELINE = """
INSERT INTO timeline (customer_id, origin_id, occurred_at, kind, channel, ref, details,
    amount, currency, event_source, event_id)
SELECT 'c' || ((g % :customers) + 1), 'c' || ((g % :customers) + 1),
    CAST(:today AS timestamptz) - make_interval(secs => (g::bigint * 7919) % (730 * 86400)),
    'purchase.completed', 'store', 'p' || g,
    json_build_object('amount', 5 + (g::bigint * 13 % 20000) / 100.0, 'currency', 'EUR'),
    5 + (g::bigint * 13 % 20000) / 100.0, 'EUR', '/bench/pos', 'e' || g
FROM generate_series(1, :purchases) AS g
"""

REFUNDS = """
INSERT INTO timeline (customer_id, origin_id, occurred_at, kind, ref, details,
    amount, currency, event_source, event_id)
SELECT customer_id, origin_id, occurred_at + interval '1 day', 'purchase.refunded', ref,
    json_build_object('amount', amount / 2, 'currency', 'EUR'), amount / 2, 'EUR',
    '/bench/pos', 'r' || seq
FROM timeline WHERE kind = 'purchase.completed' AND seq % 20 = 0
"""

# The rollup the service keeps incrementally (services/profile/rollup.py), filled at once.
ROLLUP = """
INSERT INTO segment_sales (segment, day, currency, orders, revenue)
SELECT m.segment, date(timezone('UTC', t.occurred_at)), t.currency,
    count(*) FILTER (WHERE t.kind = 'purchase.completed'),
    sum(CASE WHEN t.kind = 'purchase.completed' THEN t.amount ELSE -t.amount END)
FROM timeline t JOIN segment_members m ON m.customer_id = t.customer_id
WHERE t.kind IN ('purchase.completed', 'purchase.refunded')
GROUP BY m.segment, date(timezone('UTC', t.occurred_at)), t.currency
"""

MEMBERS = """
INSERT INTO segment_members (segment, customer_id, entered_at)
SELECT :segment, 'c' || g, now() FROM generate_series(1, :customers) AS g WHERE g % :every = 0
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def seed(url: str, customers: int, purchases: int, today: date) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(text(CUSTOMERS), {"customers": customers})
        params = {"customers": customers, "purchases": purchases, "today": today}
        await conn.execute(text(TIMELINE), params)
        await conn.execute(text(REFUNDS))
        for name, expression, every in SEGMENTS:
            await conn.execute(
                text("INSERT INTO segments (name, expression, created_at) VALUES (:n, :e, now())"),
                {"n": name, "e": expression},
            )
            await conn.execute(
                text(MEMBERS), {"segment": name, "customers": customers, "every": every}
            )
        await conn.execute(text(ROLLUP))
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        rollup = (await conn.execute(text("SELECT count(*) FROM segment_sales"))).scalar_one()
        await conn.execute(text("VACUUM ANALYZE"))
        counts = (
            await conn.execute(
                text("SELECT kind, count(*) FROM timeline GROUP BY kind ORDER BY kind")
            )
        ).all()
    await engine.dispose()
    print(
        f"seeded in {time.perf_counter() - started:.0f}s: {customers} customers, {counts}, "
        f"{rollup} segment_sales rows"
    )


async def measure(url: str, ranges: dict[str, dict[str, str]], runs: int) -> None:
    settings = ProfileSettings(
        auth_secret=TEST_SECRET,
        database_url=url,
        relay_enabled=False,
        consumer_enabled=False,
        log_level="WARNING",
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers=auth_headers("reports:read"),
            timeout=60,
        ) as client,
    ):
        for label, params in ranges.items():
            latencies, body = [], {}
            for _ in range(runs):
                started = time.perf_counter()
                response = await client.get("/v1/reports/segments", params=params)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                body = response.json()
            print(
                f"{label} {body['from']}..{body['to']}: {len(body['segments'])} rows, "
                f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
                f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms over {runs} runs"
            )
            _show(body)


def _show(body: dict[str, Any]) -> None:
    for row in body["segments"]:
        print(
            f"  {row['segment']:<9} customers {row['customers']:>6}  orders {row['orders']:>8}"
            f"  revenue {row['revenue']:>14} {row['currency']}  aov {row['aov']}"
        )


async def main(args: Any) -> None:
    maker = DatabaseMaker(
        Path(tempfile.mkdtemp()),
        backend="postgres",
        pg_url=os.environ.get("KEEPWELL_TEST_PG_URL", DEFAULT_PG_URL),
    )
    try:
        url = args.reuse
        if url is None:
            url = await maker("profile_reports")
            await upgrade_async(MIGRATIONS, url)
            await seed(url, args.customers, args.purchases, args.today)
            if args.keep:
                print(f"kept: {url}")
        month = f"{args.today.month:02d}-01"
        ranges = {
            "default (13 months)": {},
            "two years": {"from": f"{args.today.year - 2}-{month}"},
            "this month": {"from": f"{args.today.year}-{month}"},
        }
        await measure(url, ranges, args.runs)
    finally:
        if not args.keep:
            await maker.drop_all()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--today", type=date.fromisoformat, default=date.today())
    parser.add_argument("--keep", action="store_true", help="leave the database (prints its URL)")
    parser.add_argument("--reuse", metavar="URL", help="measure a database kept earlier")
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
