"""What the report benchmarks share: settling a filled database, the date ranges they
time, and timing one report through the app (a warm-up call, then ``runs`` calls)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from datetime import date
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from shared.auth import issue_token


async def vacuum_analyze(url: str, tables: Iterable[str]) -> None:
    """VACUUM (outside a transaction) sets the visibility map, so covering indexes answer
    without visiting the tables, and ANALYZE gives fresh statistics: a settled database."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        for table in tables:
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def ranges(today: date) -> dict[str, str]:
    """Label → query string: the report's default range, two years, the current month."""
    month = today.replace(day=1)
    return {
        "default (13 months)": "",
        "two years": f"?from={add_months(month, -23)}&to={add_months(month, 1)}",
        "one month": f"?from={month}&to={add_months(month, 1)}",
    }


def reader_headers(secret: str) -> dict[str, str]:
    token = issue_token(secret=secret, subject="bench", scopes=["reports:read"])
    return {"Authorization": f"Bearer {token}"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], runs: int
) -> tuple[str, Any]:
    """``p50 … ms  p95 … ms`` over ``runs`` calls after a warm-up, and the last body."""
    (await client.get(path, headers=headers)).raise_for_status()
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        got = await client.get(path, headers=headers)
        found.append(time.perf_counter() - started)
        got.raise_for_status()
    figures = (
        f"p50 {statistics.median(found) * 1000:7.1f} ms  p95 {pct(found, 0.95) * 1000:7.1f} ms"
    )
    return figures, got.json()
