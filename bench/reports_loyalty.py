"""Loyalty report benchmark: `PYTHONPATH=. .venv/bin/python -m bench.reports_loyalty`.

Fills a fresh PostgreSQL database (created here, dropped at the end) with the
loyalty books of a retailer of 100,000 members and 2,000,000 purchases over the
last two years — the purchases, one ``earn`` ledger entry each, plus redemptions,
cancellations, refunds' reversals, expiries and adjustments, and tier changes —
with set-based ``INSERT ... SELECT generate_series``, and the daily rollups the
service maintains as it writes (built by one GROUP BY each); then times
``GET /v1/reports/loyalty`` through the whole app in-process (auth, queries,
serialisation) and prints p50 / p95 per range.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from bench.report_timing import ranges, reader_headers, timed, vacuum_analyze
from services.loyalty.config import LoyaltySettings
from services.loyalty.main import create_app
from shared.db import Database
from tools.databases import DatabaseMaker
from tools.stack import migrate

SECRET = "bench-reports-secret-0123456789abcdef"
TIERS = ["Member", "Silver", "Gold"]
RULES = {
    "tiers": [
        {"name": "Member", "threshold": 0},
        {"name": "Silver", "threshold": 1000, "multiplier": "1.25"},
        {"name": "Gold", "threshold": 5000, "multiplier": "1.5"},
    ]
}

# h1, h2: independent pseudo-random numbers per row; ts: uniform over two years.
ROW = """
    SELECT g,
        hashtext('{salt}a' || g) & 2147483647 AS h1,
        hashtext('{salt}b' || g) & 2147483647 AS h2,
        CAST(:end AS timestamptz)
            - ((hashtext('{salt}t' || g) & 2147483647) % (730 * 86400)) * INTERVAL '1 second' AS ts
    FROM generate_series(1, :rows) AS g
"""

MEMBERS = """
INSERT INTO members (customer_id, balance, pending, lifetime_earned, purchase_count, tier)
SELECT 'c' || g, h1 % 4000 - 20, 0, 20000, 20,
    (ARRAY[NULL, 'Silver', 'Gold'])[1 + h2 % 3]
FROM ({row}) AS src
"""

PURCHASES = """
INSERT INTO purchases (purchase_id, customer_id, occurred_at, total, currency, points,
    reversed_points, refunded_exact, unit_points, tier)
SELECT 'p' || g, 'c' || (h1 % :customers), ts, 5 + (h2 % 30000) / 100.0, 'EUR',
    5 + (h2 % 30000) / 100, 0, 0, '{{}}', (ARRAY['Member', 'Silver', 'Gold'])[1 + h1 % 3]
FROM ({row}) AS src
"""

# One ledger entry per row; the kind and point spread come from the fixed plan below.
LEDGER = """
INSERT INTO ledger_entries (customer_id, kind, points, balance_after, reason, entry_key,
    purchase_id, rule_id, occurred_at)
SELECT 'c' || (h1 % :customers), '{kind}', {sign} * (1 + h2 % {spread}), 0, '{kind}',
    '{kind}:' || g, {purchase}, '{kind}', ts
FROM ({row}) AS src
"""

TIER_CHANGES = """
INSERT INTO tier_changes (customer_id, old_tier, new_tier, direction, reason, occurred_at)
SELECT 'c' || (h1 % :customers), 'Member', 'Silver',
    CASE WHEN h2 % 4 = 0 THEN 'down' ELSE 'up' END, 'bench', ts
FROM ({row}) AS src
"""


# The rollups the service keeps as it writes, built here the same way the migration
# backfills them: grouped by UTC day of event time, spread over the 16 shards.
ROLLUPS = [
    """
INSERT INTO daily_points (day, kind, shard, points)
SELECT CAST(timezone('UTC', occurred_at) AS date), kind, hashtext(customer_id) & 15, sum(points)
FROM ledger_entries GROUP BY 1, 2, 3
""",
    """
INSERT INTO daily_revenue (day, tier, currency, shard, orders, revenue)
SELECT CAST(timezone('UTC', occurred_at) AS date), coalesce(tier, ''), currency,
    hashtext(customer_id) & 15, count(*), sum(total)
FROM purchases GROUP BY 1, 2, 3, 4
""",
]


async def fill(url: str, *, customers: int, purchases: int, end: datetime) -> dict[str, int]:
    """Write the books; returns how many rows of each kind."""
    plan = {  # ledger kind: (rows, sign, spread of points)
        "earn": (purchases, 1, 300),
        "redeem": (purchases // 10, -1, 500),
        "cancel": (purchases // 200, 1, 500),
        "reverse": (purchases // 20, -1, 200),
        "expire": (purchases // 15, -1, 400),
        "adjust": (purchases // 200, 1, 100),
    }
    db = Database(url)
    try:
        async with db.unit_of_work() as session:
            base = {"customers": customers, "end": end}
            await session.execute(
                text("INSERT INTO rule_sets (version, rules, created_by) VALUES (1, :r, 'bench')"),
                {"r": json.dumps(RULES)},
            )
            await session.execute(
                text(MEMBERS.format(row=ROW.format(salt="m"))), {**base, "rows": customers}
            )
            await session.execute(
                text(PURCHASES.format(row=ROW.format(salt="p"))), {**base, "rows": purchases}
            )
            for kind, (rows, sign, spread) in plan.items():
                sql = LEDGER.format(
                    row=ROW.format(salt=kind),
                    kind=kind,
                    sign=sign,
                    spread=spread,
                    purchase="'p' || g" if kind == "earn" else "NULL",
                )
                await session.execute(text(sql), {**base, "rows": rows})
            await session.execute(
                text(TIER_CHANGES.format(row=ROW.format(salt="t"))),
                {**base, "rows": customers // 2},
            )
            for rollup in ROLLUPS:
                await session.execute(text(rollup))
    finally:
        await db.dispose()
    await vacuum_analyze(url, ("members", "tier_changes", "daily_points", "daily_revenue"))
    return {kind: rows for kind, (rows, _, _) in plan.items()}


async def time_reports(url: str, runs: int, today: date) -> None:
    settings = LoyaltySettings(
        database_url=url,
        auth_secret=SECRET,
        consumer_enabled=False,
        relay_enabled=False,
        log_json=False,
    )
    headers = reader_headers(SECRET)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        for label, query in ranges(today).items():
            figures, body = await timed(client, f"/v1/reports/loyalty{query}", headers, runs)
            issued = sum(m["issued"] for m in body["months"])
            orders = sum(r["orders"] for r in body["revenue_by_tier"])
            print(
                f"  {label:20} {figures}"
                f"  ({orders:,} orders, {issued:,} points issued,"
                f" liability {body['liability']['value']} {body['liability']['currency']})"
            )


async def main(args: argparse.Namespace) -> None:
    databases = DatabaseMaker(Path(tempfile.mkdtemp()), backend="postgres", pg_url=args.pg_url)
    now = datetime.now(UTC)
    try:
        url = await databases("loyalty")
        await asyncio.to_thread(migrate, "loyalty", url)
        started = time.perf_counter()
        rows = await fill(url, customers=args.customers, purchases=args.purchases, end=now)
        print(
            f"GET /v1/reports/loyalty over {args.purchases:,} purchases and"
            f" {sum(rows.values()):,} ledger entries of {args.customers:,} members in PostgreSQL"
        )
        print(f"  (generated in {time.perf_counter() - started:.1f}s; {args.runs} calls each)")
        await time_reports(url, args.runs, now.date())
    finally:
        await databases.drop_all()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
