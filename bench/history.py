"""A year of purchase history, and a churn model fitted on it, for a benchmark stack.

A deployment past its first day has a churn model (the daily refit), and with one,
engagement scores every purchase as it records it (``churn.scores.rescore``); without
one that step is skipped. A benchmark stack starts empty, so until the eighth session's
figures the benchmark measured engagement without it. ``purchases`` writes a history as
the model behind the churn scores (BG/NBD) tells it: each customer buys at a rate of
their own (gamma distributed across customers) and, after each purchase, may stop for
good (a beta-distributed chance); spend per purchase is gamma distributed. The history
spans ``HISTORY_DAYS`` and ends ``NEWEST_DAYS`` ago: older than engagement's
``thank_you_max_age_seconds`` (seven days), so none of it is thanked by e-mail.
``fit`` then fits the model as ``POST /v1/models/refit`` does (without the refit's
re-score of every customer, which the hourly schedule would make anyway).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.events.common import ContactHint

HISTORY_DAYS: Final = 365
NEWEST_DAYS: Final = 8
# The population: purchases per day ~ gamma(shape, scale), mean 0.04 (one every 25 days);
# the chance of stopping after a purchase ~ beta(a, b), mean 0.21; spend ~ 5 + gamma.
RATE_SHAPE, RATE_SCALE = 0.8, 0.05
STOP_A, STOP_B = 0.8, 3.0
SPEND_SHAPE, SPEND_SCALE = 3.0, 15.0


def purchases(customers: int, *, now: datetime, seed: int = 1) -> list[PurchaseCompleted]:
    """``customers`` customers' purchases over the year before ``now`` (less the last
    ``NEWEST_DAYS``), oldest first per customer; the same for the same seed and ``now``."""
    rnd = random.Random(seed)
    newest = now - timedelta(days=NEWEST_DAYS)
    made: list[PurchaseCompleted] = []
    for c in range(customers):
        customer = f"history-{seed}-{c}"
        rate = rnd.gammavariate(RATE_SHAPE, RATE_SCALE)
        stop = rnd.betavariate(STOP_A, STOP_B)
        at = now - timedelta(days=rnd.uniform(NEWEST_DAYS, HISTORY_DAYS))
        for k in range(10_000):
            amount = Decimal(5 + rnd.gammavariate(SPEND_SHAPE, SPEND_SCALE)).quantize(
                Decimal("0.01")
            )
            made.append(_purchase(customer, f"H{seed}-{c}-{k}", at, amount))
            if rnd.random() < stop:
                break
            at += timedelta(days=rnd.expovariate(rate))
            if at > newest:
                break
    return made


def _purchase(customer: str, purchase_id: str, at: datetime, amount: Decimal) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=customer,
        source="/bench/pos",
        time=at,
        data=PurchaseCompletedData(
            purchase_id=purchase_id,
            channel="store",
            store_id="s-1",
            total={"amount": amount, "currency": "EUR"},
            customer=ContactHint(name=f"Customer {customer}", email=f"{customer}@bench.test"),
        ),
    )


async def fit(engagement_url: str, *, calibration_end: date | None = None) -> str:
    """Fit engagement's churn model on what its database holds, as a refit does; a line
    saying what was fitted."""
    from services.engagement.churn import fitting
    from services.engagement.churn.settings import ChurnSettings

    end = calibration_end or datetime.now(UTC).date()
    engine = create_async_engine(engagement_url, poolclass=NullPool)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            model = await fitting.refit(session, calibration_end=end, config=ChurnSettings())
            await session.commit()
    finally:
        await engine.dispose()
    state = "converged" if model.converged else "NOT converged"
    return f"churn model {model.id} fitted on {model.n_customers} customers ({state})"
