"""Engagement report benchmark: `PYTHONPATH=. .venv/bin/python -m bench.reports_engagement`.

Fills a fresh PostgreSQL database (created here, dropped at the end) with the churn tables
of 100,000 customers and 2,000,000 purchases over the last two years (a few refunded), their
scores, band changes, and 200,000 journey messages with their conversions, all with
set-based ``INSERT ... SELECT generate_series``; then times ``GET /v1/reports/{retention,
value,engagement}`` through the whole app in-process (auth, queries, serialisation) and
prints p50 / p95 per report and range.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from bench.report_timing import ranges, reader_headers, timed, vacuum_analyze
from services.engagement.config import EngagementSettings
from services.engagement.main import create_app
from shared.db import Database
from tools.databases import DatabaseMaker
from tools.stack import migrate

SECRET = "bench-reports-secret-0123456789abcdef"
REPORTS = ("retention", "value", "engagement")

# h1, h2: independent pseudo-random numbers per row; ts: uniform over two years.
ROW = """
    SELECT g,
        hashtext('{salt}a' || g) & 2147483647 AS h1,
        hashtext('{salt}b' || g) & 2147483647 AS h2,
        CAST(:end AS timestamptz)
            - ((hashtext('{salt}t' || g) & 2147483647) % (730 * 86400)) * INTERVAL '1 second' AS ts
    FROM generate_series(1, :rows) AS g
"""
FILL = [
    """
INSERT INTO churn_purchases (purchase_id, customer_id, day, occurred_at, amount, currency, refunded)
SELECT 'p' || g, 'c' || (h1 % :customers), CAST(timezone('UTC', ts) AS date), ts,
    5 + (h2 % 30000) / 100.0, 'EUR',
    CASE WHEN h2 % 50 = 0 THEN 5 + (h2 % 30000) / 100.0 WHEN h2 % 50 = 1 THEN 2 ELSE 0 END
FROM ({purchases}) AS src
""",
    """
INSERT INTO churn_customers (customer_id, currency, purchase_days, repeat_purchases, total_spend,
    repeat_average_value, gap_count, open_complaints, risk, band, reasons, clv)
SELECT 'c' || g, 'EUR', 20, 19, 2000, 100, 19, 0, (h1 % 1000) / 1000.0,
    CASE WHEN h1 % 1000 >= 750 THEN 'high' WHEN h1 % 1000 >= 500 THEN 'medium' ELSE 'low' END,
    '["bench"]', (h2 % 500000) / 100.0
FROM ({customers}) AS src
""",
    """
INSERT INTO churn_band_changes (customer_id, band, previous_band, changed_at)
SELECT 'c' || (h1 % :customers), 'high', 'medium', ts FROM ({changes}) AS src
""",
    """
INSERT INTO outreach (id, customer_id, journey, channel, template, dedupe_key, status, attempts,
    context, due_at, sent_at)
SELECT 'o' || g, 'c' || (h1 % :customers),
    (ARRAY['thank_you', 'win_back', 'tier_up', 'points_expiring'])[1 + h1 % 4],
    CASE WHEN h2 % 5 = 0 THEN 'sms' ELSE 'email' END, 'bench', 'o' || g,
    (ARRAY['sent', 'sent', 'sent', 'suppressed', 'failed'])[1 + h2 % 5], 1, '{{}}', ts,
    CASE WHEN h2 % 5 < 3 THEN ts END
FROM ({messages}) AS src
""",
    # The monthly rollups the service keeps as purchases arrive, built the way the migration
    # backfills them.
    """
INSERT INTO churn_customer_months (customer_id, month, purchases, revenue, currency, cohort,
    prev_active)
SELECT customer_id, month, purchases, revenue, 'EUR', min(month) OVER (PARTITION BY customer_id),
    coalesce(lag(month) OVER (PARTITION BY customer_id ORDER BY month) = month - 1, false)
FROM (SELECT customer_id, CAST(EXTRACT(YEAR FROM timezone('UTC', occurred_at)) AS INTEGER) * 12
        + CAST(EXTRACT(MONTH FROM timezone('UTC', occurred_at)) AS INTEGER) - 1 AS month,
        count(*) AS purchases, sum(amount - refunded) AS revenue
      FROM churn_purchases WHERE refunded < amount GROUP BY 1, 2) AS bought
""",
    """
INSERT INTO churn_customer_cohorts (customer_id, cohort, second)
SELECT c.customer_id, c.cohort,
    CASE WHEN c.purchases >= 2 THEN c.cohort ELSE (
        SELECT min(n.month) FROM churn_customer_months AS n
        WHERE n.customer_id = c.customer_id AND n.month > c.cohort) END
FROM churn_customer_months AS c WHERE c.month = c.cohort
""",
    """
INSERT INTO churn_month_buyers (month, since, currency, shard, customers, purchases, revenue)
SELECT month, since, currency, hashtext(customer_id) & 15, count(*), sum(purchases), sum(revenue)
FROM (SELECT customer_id, month, currency, purchases, revenue,
          coalesce(lag(month) OVER (PARTITION BY customer_id ORDER BY month), 0) AS since
      FROM churn_customer_months) AS bought
GROUP BY 1, 2, 3, 4
""",
    """
INSERT INTO churn_cohort_months (cohort, month, shard, active, retained)
SELECT cohort, month, hashtext(customer_id) & 15, count(*),
    sum(CASE WHEN prev_active THEN 1 ELSE 0 END)
FROM churn_customer_months GROUP BY 1, 2, 3
""",
    """
INSERT INTO conversions (purchase_key, outreach_id, customer_id, purchased_at)
SELECT 'k' || id, id, customer_id, sent_at + INTERVAL '2 days'
FROM outreach WHERE status = 'sent' AND hashtext(id) % 7 = 0
""",
]
TABLES = (
    "churn_purchases",
    "churn_customers",
    "churn_band_changes",
    "churn_customer_months",
    "churn_customer_cohorts",
    "churn_cohort_months",
    "churn_month_buyers",
    "outreach",
    "conversions",
)


async def fill(url: str, *, customers: int, purchases: int, end: datetime) -> None:
    rows = {
        "purchases": (purchases, "p"),
        "customers": (customers, "c"),
        "changes": (customers // 5, "b"),
        "messages": (purchases // 10, "o"),
    }
    db = Database(url)
    try:
        async with db.unit_of_work() as session:
            for sql in FILL:
                used = [k for k in rows if "{" + k + "}" in sql]
                count, salt = rows[used[0]] if used else (0, "")
                query = sql.format(**{k: ROW.format(salt=salt) for k in used})
                await session.execute(
                    text(query), {"customers": customers, "end": end, "rows": count}
                )
    finally:
        await db.dispose()
    await vacuum_analyze(url, TABLES)


async def time_reports(url: str, runs: int, today: date) -> None:
    settings = EngagementSettings(
        database_url=url,
        auth_secret=SECRET,
        consumer_enabled=False,
        relay_enabled=False,
        log_json=False,
    )
    headers = reader_headers(SECRET)
    app = create_app(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client,
    ):
        for name in REPORTS:
            for label, query in ranges(today).items():
                figures, body = await timed(client, f"/v1/reports/{name}{query}", headers, runs)
                print(f"  {name:11} {label:20} {figures}  {summary(name, body)}")


def summary(name: str, body: dict[str, object]) -> str:
    if name == "retention":
        months = body["months"]
        assert isinstance(months, list)
        return f"(active in the last month: {months[-1]['active']:,})"
    if name == "value":
        return f"(buyers: {body['customers']:,})"
    at_risk = body["at_risk"]
    assert isinstance(at_risk, dict)
    return f"(high now: {at_risk['high_now']:,}, won back: {at_risk['won_back']:,})"


async def main(args: argparse.Namespace) -> None:
    databases = DatabaseMaker(Path(tempfile.mkdtemp()), backend="postgres", pg_url=args.pg_url)
    now = datetime.now(UTC)
    try:
        url = await databases("engagement")
        await asyncio.to_thread(migrate, "engagement", url)
        started = time.perf_counter()
        await fill(url, customers=args.customers, purchases=args.purchases, end=now)
        print(
            f"engagement reports over {args.purchases:,} purchases of {args.customers:,}"
            f" customers in PostgreSQL (generated in {time.perf_counter() - started:.1f}s;"
            f" {args.runs} calls each)"
        )
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
