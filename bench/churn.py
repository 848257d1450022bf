"""Churn/CLV benchmark: `PYTHONPATH=. .venv/bin/python -m bench.churn [--db postgres]`.

Prints:
  1. model fit time (BG/NBD + Gamma-Gamma, the maths alone) for 2,357 and 100,000 synthetic
     customers drawn from the BG/NBD process with CDNOW-like parameters;
  2. full re-score throughput (customers/s): ``rescore_all`` over N stored customers in the
     real database (read, score, write, enqueue band changes), chunk by chunk as the
     scheduled timer runs it, here all in one transaction;
  3. statistics consumer rate (events/s): purchase.completed events through the churn
     handlers into the real database, 500 per transaction as the consumer runner batches a
     poll (Kafka itself is not in this figure; see bench.pipeline for the broker).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from services.engagement.churn import calibration, consumers, scores
from services.engagement.churn.models import ChurnCustomer, ChurnModel
from services.engagement.churn.settings import ChurnSettings
from services.engagement.main import MIGRATIONS
from services.engagement.scoring import BgNbdParams, fit_bgnbd, fit_gamma_gamma
from shared.config import ServiceSettings
from shared.db import Database
from shared.events import Money
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.migrations import upgrade_async
from tools.databases import DatabaseMaker

CDNOW = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
START = date(2025, 1, 6)


def simulate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """x, t_x, T (weeks) and mean repeat spend for n customers of a 12-week cohort."""
    lam = rng.gamma(CDNOW.r, 1.0 / CDNOW.alpha, n)
    p = rng.beta(CDNOW.a, CDNOW.b, n)
    T = 39.0 - rng.uniform(0.0, 12.0, n)
    events = rng.poisson(lam * T)
    x = np.minimum(events, rng.geometric(p)).astype(np.float64)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), events - x + 1), 0.0)
    spend = rng.gamma(6.25, 1.0 / rng.gamma(3.74, 1.0 / 15.44, n)) + 0.01
    return x, t_x, T, spend


def fit_time(n: int) -> str:
    x, t_x, T, z = simulate(n, np.random.default_rng(n))
    started = time.perf_counter()
    fit = fit_bgnbd(x, t_x, T)
    repeat = x > 0
    spend = fit_gamma_gamma(x[repeat], z[repeat])
    took = time.perf_counter() - started
    p = fit.params
    return (
        f"fit n={n:>7,}: {took:6.2f} s (BG/NBD {fit.fit_seconds:.2f} s, converged={fit.converged}; "
        f"r={p.r:.3f} alpha={p.alpha:.2f} a={p.a:.3f} b={p.b:.3f}; "
        f"Gamma-Gamma on {spend.n_customers:,} repeat buyers)"
    )


def purchase_log(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, date]:
    """Purchase days of n customers of a 12-week cohort over 39 weeks (BG/NBD process)."""
    ids: list[str] = []
    days: list[int] = []
    first = START.toordinal()
    end = first + 273
    for i, (lam, p, start) in enumerate(
        zip(
            rng.gamma(CDNOW.r, 1.0 / CDNOW.alpha, n) / 7.0,  # per day
            rng.beta(CDNOW.a, CDNOW.b, n),
            rng.integers(0, 84, n),
            strict=True,
        )
    ):
        day = first + int(start)
        while day <= end:
            ids.append(f"c{i}")
            days.append(day)
            if rng.random() < p or lam <= 0:
                break
            day += 1 + int(rng.exponential(1.0 / lam))
    return np.array(ids, dtype=object), np.array(days, dtype=np.float64), date.fromordinal(end)


def combiner_time(n: int) -> str:
    ids, days, end = purchase_log(n, np.random.default_rng(n))
    started = time.perf_counter()
    learned = calibration.learn(
        ids, days, end, horizon_days=90, percentile=90.0, min_gaps=3, min_customers=20
    )
    took = time.perf_counter() - started
    if learned is None:
        return f"risk combiner n={n:>7,}: none learned ({took:.2f} s)"
    return (
        f"risk combiner n={n:>7,}: {took:6.2f} s ({len(days):,} purchases; backtest of "
        f"{learned.days} days, AUC {learned.auc:.3f} vs model alone {learned.model_auc:.3f})"
    )


async def seed_customers(db: Database, n: int) -> None:
    x, t_x, T, z = simulate(n, np.random.default_rng(1))
    as_of = START + timedelta(days=273)
    rows = []
    for i in range(n):
        first = as_of - timedelta(days=int(T[i] * 7))
        rows.append(
            {
                "customer_id": f"b-{i}",
                "currency": "EUR",
                "first_day": first,
                "last_day": first + timedelta(days=int(t_x[i] * 7)),
                "purchase_days": int(x[i]) + 1,
                "repeat_purchases": int(x[i]),
                "total_spend": Decimal(f"{z[i] * (x[i] + 1):.2f}"),
                "repeat_average_value": float(z[i]) if x[i] > 0 else 0.0,
                "gap_count": int(x[i]),
                "gap_median_days": 14.0 if x[i] else None,
                "gap_p90_days": 30.0 if x[i] else None,
                "open_complaints": 0,
                "reasons": [],
            }
        )
    async with db.unit_of_work() as session:
        for start in range(0, n, 5000):
            await session.execute(insert(ChurnCustomer), rows[start : start + 5000])
        session.add(
            ChurnModel(
                calibration_end=as_of,
                r=CDNOW.r,
                alpha=CDNOW.alpha,
                a=CDNOW.a,
                b=CDNOW.b,
                log_likelihood=0.0,
                n_customers=n,
                converged=True,
                fit_seconds=0.0,
                currency="EUR",
                spend={"p": 6.25, "q": 3.74, "gamma": 15.44},
            )
        )


async def rescore_rate(db: Database, n: int) -> str:
    await seed_customers(db, n)
    now = datetime.combine(START + timedelta(days=280), datetime.min.time(), UTC)
    started = time.perf_counter()
    async with db.unit_of_work() as session:
        changed = await scores.rescore_all(session, config=ChurnSettings(), now=now)
    took = time.perf_counter() - started
    return (
        f"full re-score of {n:,} customers: {took:.2f} s = {n / took:,.0f} customers/s "
        f"({changed:,} band changes enqueued)"
    )


def purchase(i: int, customers: int) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=f"e-{i % customers}",
        source="/bench",
        time=datetime.combine(START + timedelta(days=i // customers), datetime.min.time(), UTC),
        data=PurchaseCompletedData(
            purchase_id=f"bench-{i}",
            channel="store",
            total=Money(amount=Decimal("12.50"), currency="EUR"),
        ),
    )


async def consumer_rate(db: Database, events: int, batch: int = 500) -> str:
    table = consumers.handlers(ServiceSettings(), ChurnSettings())
    stream = [purchase(i, events // 5) for i in range(events)]  # 5 purchases per customer
    started = time.perf_counter()
    for start in range(0, events, batch):
        async with db.unit_of_work() as session:
            for event in stream[start : start + batch]:
                await table[PurchaseCompleted](session, event)
    took = time.perf_counter() - started
    return (
        f"statistics consumer: {events:,} purchases in {took:.2f} s = {events / took:,.0f} events/s"
    )


async def database_part(backend: str, rescore_n: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        maker = DatabaseMaker(Path(tmp), backend=backend, pg_url=PG_URL)
        try:
            for name, job in (("rescore", rescore_rate), ("consume", consumer_rate)):
                url = await maker(f"bench_{name}")
                await upgrade_async(MIGRATIONS, url)
                db = Database(url)
                size = rescore_n if name == "rescore" else events
                print(f"[{backend}] {await job(db, size)}", flush=True)
                await db.dispose()
        finally:
            await maker.drop_all()


PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rescore", type=int, default=20_000, help="customers to re-score")
    parser.add_argument("--events", type=int, default=3_000, help="purchases to consume")
    parser.add_argument("--skip-fit", action="store_true")
    args = parser.parse_args()
    if not args.skip_fit:
        for n in (2_357, 100_000):
            print(fit_time(n), flush=True)
            print(combiner_time(n), flush=True)
    asyncio.run(database_part(args.db, args.rescore, args.events))


if __name__ == "__main__":
    main()
