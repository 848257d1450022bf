"""Feedback report benchmark: `PYTHONPATH=. .venv/bin/python -m bench.reports_feedback`.

Fills a fresh PostgreSQL database (created here, dropped at the end) with the
feedback history of a retailer of 100,000 customers and 2,000,000 purchases —
by default 400,000 survey responses and 50,000 complaint cases over the last two
years, written with set-based ``INSERT ... SELECT generate_series`` — then times
``GET /v1/reports/feedback`` through the whole app in-process (auth, query,
serialisation) and prints p50 / p95 per range. Purchases live in other services'
databases; the feedback report reads only responses and complaints.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from bench.report_timing import ranges, reader_headers, timed, vacuum_analyze
from services.feedback.config import FeedbackSettings
from services.feedback.main import create_app
from services.feedback.repository import reports
from shared.db import Database
from tools.databases import DatabaseMaker
from tools.stack import migrate

SECRET = "bench-reports-secret-0123456789abcdef"

# h1..h3: independent pseudo-random numbers per row; ts: uniform over two years.
RESPONSES = """
INSERT INTO responses (id, dedupe_key, survey_id, survey_version, customer_id, source,
    channel, store_id, product_category, nps_score, csat_score, category,
    submitted_at, updated_at)
SELECT 'r' || g, 'k' || g, 'survey-' || (h1 % 4), 1, 'c' || (h2 % :customers), 'token',
    (ARRAY['store','web','app','phone'])[1 + h1 % 4], 'store-' || (h2 % 50),
    'cat-' || (h3 % 12),
    CASE WHEN h3 % 10 < 8 THEN h1 % 11 END,
    CASE WHEN h3 % 10 >= 6 THEN 1 + h2 % 5 END,
    NULL, ts, ts
FROM (
    SELECT g,
        hashtext('a' || g) & 2147483647 AS h1,
        hashtext('b' || g) & 2147483647 AS h2,
        hashtext('c' || g) & 2147483647 AS h3,
        CAST(:end AS timestamptz)
            - ((hashtext('t' || g) & 2147483647) % (730 * 86400)) * INTERVAL '1 second' AS ts
    FROM generate_series(1, :rows) AS g
) AS src
"""

COMPLAINTS = """
INSERT INTO complaints (id, customer_id, category, severity, channel, status, opened_at,
    first_response_due, resolution_due, acknowledged_at, resolved_at,
    first_response_breached, resolution_breached, reopen_count)
SELECT 'case' || g, 'c' || (h1 % :customers),
    (ARRAY['delivery','billing','product','staff','detractor'])[1 + h1 % 5],
    'high', (ARRAY['phone','chat','email','social','web'])[1 + h2 % 5],
    CASE WHEN resolved IS NOT NULL THEN 'resolved'
         WHEN acked IS NOT NULL THEN 'acknowledged' ELSE 'open' END,
    opened, opened + INTERVAL '4 hours', opened + INTERVAL '24 hours', acked, resolved,
    acked IS NULL OR acked > opened + INTERVAL '4 hours',
    resolved IS NULL OR resolved > opened + INTERVAL '24 hours', 0
FROM (
    SELECT g, h1, h2, opened,
        CASE WHEN h2 % 10 < 9 THEN opened + (h1 % 6) * INTERVAL '1 hour' END AS acked,
        CASE WHEN h2 % 10 < 8 THEN opened + (6 + h2 % 30) * INTERVAL '1 hour' END AS resolved
    FROM (
        SELECT g,
            hashtext('d' || g) & 2147483647 AS h1,
            hashtext('e' || g) & 2147483647 AS h2,
            CAST(:end AS timestamptz)
                - ((hashtext('u' || g) & 2147483647) % (730 * 86400)) * INTERVAL '1 second'
                AS opened
        FROM generate_series(1, :cases) AS g
    ) AS base
) AS src
"""


async def fill(url: str, *, customers: int, rows: int, cases: int, end: datetime) -> None:
    db = Database(url)
    try:
        async with db.unit_of_work() as session:
            params = {"customers": customers, "end": end}
            await session.execute(text(RESPONSES), {**params, "rows": rows})
            await session.execute(text(COMPLAINTS), {**params, "cases": cases})
        async with db.unit_of_work() as session:
            await reports.rebuild_response_days(session)  # the daily roll-up, set-based
    finally:
        await db.dispose()
    await vacuum_analyze(url, ("responses", "response_days", "complaints"))


async def time_reports(url: str, runs: int, today: date) -> None:
    settings = FeedbackSettings(
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
            figures, body = await timed(client, f"/v1/reports/feedback{query}", headers, runs)
            overall = body["overall"]
            print(
                f"  {label:20} {figures}"
                f"  ({overall['nps_responses']:,} NPS, {overall['csat_responses']:,} CSAT,"
                f" {overall['complaints']:,} cases)"
            )


async def main(args: argparse.Namespace) -> None:
    databases = DatabaseMaker(Path(tempfile.mkdtemp()), backend="postgres", pg_url=args.pg_url)
    now = datetime.now(UTC)
    try:
        url = await databases("feedback")
        await asyncio.to_thread(migrate, "feedback", url)
        started = time.perf_counter()
        await fill(url, customers=args.customers, rows=args.rows, cases=args.cases, end=now)
        print(
            f"GET /v1/reports/feedback over {args.rows:,} responses and {args.cases:,} complaints"
            f" of {args.customers:,} customers in PostgreSQL"
        )
        print(f"  (generated in {time.perf_counter() - started:.1f}s; {args.runs} calls each)")
        await time_reports(url, args.runs, now.date())
    finally:
        await databases.drop_all()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=400_000, help="survey responses")
    parser.add_argument("--cases", type=int, default=50_000, help="complaint cases")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
