"""Feedback benchmark: `PYTHONPATH=. .venv/bin/python -m bench.feedback [--db postgres]`.

Prints:
  1. responses/s accepted over REST (``POST /v1/responses`` with a signed token):
     a closed-loop burst of N answers from C concurrent clients (the service's
     ceiling as this load generator sees it), then an open-loop run at a fixed
     offered rate with p50 / p99 latency;
  2. NPS query latency over a large response table in PostgreSQL (rows generated
     with one INSERT ... SELECT generate_series), for the headline figure and the
     by-store and by-month breakdowns.

The service runs under uvicorn in its own process (relay on, publishing to a local
Tansu broker; consumer off). The load generator is one asyncio process with httpx
on the same two shared cores: its own CPU cost (~1 ms a request) competes with the
server, so the burst rate is a lower bound of what the service could take, and
latencies include client-side queueing once the offered rate nears the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

from services.feedback.models import Invitation
from services.feedback.repository.analytics import ResponseFilter
from services.feedback.schemas import SurveyCreate
from services.feedback.service import analytics, surveys, tokens
from shared.config import ServiceSettings
from shared.db import Database
from shared.events import all_topics
from shared.kafka import create_topics
from tools import broker as tansu
from tools.databases import DatabaseMaker
from tools.stack import ServiceProcess, migrate, service_env

SECRET = "bench-survey-secret"
SURVEY = SurveyCreate.model_validate(
    {
        "id": "bench",
        "name": "Bench NPS",
        "kind": "nps",
        "audience": "after_purchase",
        "questions": [
            {"id": "recommend", "kind": "nps", "text": {"en": "Recommend?", "vi": "Giới thiệu?"}},
            {"id": "why", "kind": "text", "text": {"en": "Why?", "vi": "Tại sao?"}},
        ],
    }
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


async def seed_invitations(url: str, n: int) -> list[str]:
    """A survey and ``n`` open invitations; returns their signed tokens."""
    db = Database(url)
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + timedelta(days=14)
    rows, found = [], []
    for i in range(n):
        inv_id, customer = uuid.uuid4().hex, f"bench-{i}"
        rows.append(
            {
                "id": inv_id,
                "survey_id": "bench",
                "survey_version": 1,
                "customer_id": customer,
                "signed_customer_id": customer,
                "reason": "after_purchase",
                "channel": "store",
                "store_id": f"s-{i % 20}",
                "created_at": now,
                "expires_at": expires,
            }
        )
        claims = tokens.TokenClaims(inv_id, customer, "bench", 1, expires)
        found.append(tokens.sign(claims, secret=SECRET.encode()))
    try:
        async with db.unit_of_work() as session:
            await surveys.create_survey(session, survey=SURVEY, now=now)
            await session.execute(insert(Invitation), rows)
    finally:
        await db.dispose()
    return found


def answer(token: str) -> dict[str, Any]:
    score = random.randint(0, 10)
    return {"token": token, "answers": {"recommend": score, "why": "bench run"}}


async def post(client: httpx.AsyncClient, token: str, latencies: list[float]) -> int:
    """The status code, or 0 when the request itself failed (timeout, connection)."""
    started = time.perf_counter()
    try:
        response = await client.post("/v1/responses", json=answer(token))
    except httpx.HTTPError:
        return 0
    latencies.append(time.perf_counter() - started)
    return response.status_code


async def burst(base: str, tokens_: list[str], concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    queue = list(tokens_)
    failures = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while queue:
            if await post(client, queue.pop(), latencies) != 201:
                failures += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(tokens_) / elapsed, latencies, failures


async def paced(base: str, tokens_: list[str], rate: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    codes: list[int] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        start = time.perf_counter()
        pending = []
        for i, token in enumerate(tokens_):
            if (delay := start + i / rate - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(post(client, token, latencies)))
        codes = await asyncio.gather(*pending)
    return latencies, sum(1 for c in codes if c != 201)


async def rest_part(db: str, n: int, concurrency: int, rate: int, seconds: int) -> None:
    port = tansu.free_port()
    broker = tansu.start(port)
    bootstrap = f"127.0.0.1:{port}"
    prefix = "benchfb."
    await create_topics(
        ServiceSettings(kafka_bootstrap_servers=bootstrap), all_topics(prefix), partitions=4
    )
    databases = DatabaseMaker(Path(tempfile.mkdtemp(prefix="kw-bench-fb-")), backend=db)
    service: ServiceProcess | None = None
    try:
        url = await databases("feedback")
        await asyncio.to_thread(migrate, "feedback", url)
        all_tokens = await seed_invitations(url, n + rate * seconds)
        extra = {
            "FEEDBACK_SURVEY_TOKEN_SECRET": SECRET,
            "FEEDBACK_CONSUMER_ENABLED": "false",
            "FEEDBACK_LOG_LEVEL": "WARNING",
        }
        env = service_env(
            "feedback", bootstrap=bootstrap, prefix=prefix, database_url=url, extra=extra
        )
        service = ServiceProcess(
            "feedback", tansu.free_port(), env, Path("var/bench-logs/feedback.log")
        ).start()
        await asyncio.to_thread(service.wait_ready)
        print(f"REST responses ({db}), random NPS 0-10 (7 of 11 are detractors: a case each)")
        rps, burst_lat, burst_fail = await burst(service.url, all_tokens[:n], concurrency)
        print(
            f"  burst   {n} answers, {concurrency} clients: {rps:7.0f} responses/s"
            f"  p50 {pct(burst_lat, 50):6.1f} ms  p99 {pct(burst_lat, 99):6.1f} ms"
            f"  failed: {burst_fail}",
            flush=True,
        )
        paced_lat, paced_fail = await paced(service.url, all_tokens[n:], rate)
        print(
            f"  paced   {rate}/s offered for {seconds}s:{'':9}"
            f"  p50 {pct(paced_lat, 50):6.1f} ms  p99 {pct(paced_lat, 99):6.1f} ms"
            f"  failed: {paced_fail}"
        )
    finally:
        if service is not None:
            service.stop()
        tansu.stop(broker)
        await databases.drop_all()


GENERATE = """
INSERT INTO responses (id, dedupe_key, survey_id, survey_version, customer_id, source,
    channel, store_id, product_category, nps_score, category, submitted_at, updated_at)
SELECT 'r' || g, 'k' || g, 'survey-' || (g % 5), 1, 'c' || g, 'event',
    (ARRAY['store','web','app','phone'])[1 + g % 4], 'store-' || (g % 50),
    'cat-' || (g % 12), s,
    CASE WHEN s >= 9 THEN 'promoter' WHEN s >= 7 THEN 'passive' ELSE 'detractor' END,
    ts, ts
FROM (
    SELECT g, (hashtext(g::text) & 2147483647) % 11 AS s,
        TIMESTAMPTZ '2025-01-01' + (g % 525600) * INTERVAL '1 minute' AS ts
    FROM generate_series(1, :rows) AS g
) AS src
"""


async def timed(runs: int, query: Any) -> list[float]:
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        await query()
        found.append(time.perf_counter() - started)
    return found


async def nps_part(rows: int, runs: int) -> None:
    databases = DatabaseMaker(Path(tempfile.mkdtemp()), backend="postgres")
    try:
        url = await databases("feedback")
        await asyncio.to_thread(migrate, "feedback", url)
        db = Database(url)
        try:
            started = time.perf_counter()
            async with db.unit_of_work() as session:
                await session.execute(text(GENERATE), {"rows": rows})
            async with db.unit_of_work() as session:
                await session.execute(text("ANALYZE responses"))
            print(f"\nNPS queries over {rows:,} responses in PostgreSQL")
            print(f"  (generated in {time.perf_counter() - started:.1f}s; {runs} runs each)")
            await _nps_queries(db, runs)
        finally:
            await db.dispose()
    finally:
        await databases.drop_all()


async def _nps_queries(db: Database, runs: int) -> None:
    since = datetime(2025, 10, 1, tzinfo=UTC)
    cases: list[tuple[str, Any, Any, ResponseFilter]] = [
        ("overall", "none", "month", ResponseFilter()),
        ("by store", "store", "month", ResponseFilter()),
        ("by month", "period", "month", ResponseFilter()),
        (
            "by week, one survey, since Oct",
            "period",
            "week",
            ResponseFilter(since, None, "survey-1"),
        ),
    ]
    for label, by, period, where in cases:

        async def query(by: Any = by, period: Any = period, where: ResponseFilter = where) -> None:
            async with db.unit_of_work() as session:
                await analytics.nps_report(session, by=by, period=period, where=where)

        found = await timed(runs, query)
        print(
            f"  {label:32} median {statistics.median(found) * 1000:7.1f} ms"
            f"  max {max(found) * 1000:7.1f} ms"
        )


async def main(args: argparse.Namespace) -> None:
    if not args.skip_rest:
        await rest_part(args.db, args.n, args.concurrency, args.rate, args.seconds)
    if not args.skip_nps:
        await nps_part(args.rows, args.runs)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--n", type=int, default=2000, help="answers in the burst")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=int, default=100, help="offered answers/s when paced")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=200_000, help="responses for the NPS query")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-rest", action="store_true")
    parser.add_argument("--skip-nps", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
