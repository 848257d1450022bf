"""Helpers of the churn tests: events in (through the real handlers), rows and events out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from services.engagement.churn import consumers
from services.engagement.churn.models import ChurnCustomer
from services.engagement.churn.settings import ChurnSettings
from shared.config import ServiceSettings
from shared.consumer import Handlers
from shared.db import Database
from shared.events import Event, Money
from shared.events.commerce import (
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from shared.events.engagement import ChurnRiskChanged
from tests.engagement.support import published

# The fixed noisy-or: these small populations test its arithmetic; the learned combiner
# has its own tests (test_calibration.py) and the CDNOW proof.
CONFIG = ChurnSettings(min_customers_to_fit=5, calibrate=False)


class Clock:
    """A settable clock for handlers and timers."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def bought(
    customer_id: str,
    day: date,
    amount: str = "20.00",
    *,
    purchase_id: str | None = None,
    currency: str = "EUR",
    hour: int = 12,
) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=customer_id,
        source="/pos/churn-test",
        time=at(day, hour),
        data=PurchaseCompletedData(
            purchase_id=purchase_id or f"p-{uuid.uuid4().hex[:10]}",
            channel="store",
            total=Money(amount=Decimal(amount), currency=currency),
        ),
    )


def refunded(customer_id: str, purchase_id: str, amount: str, day: date) -> PurchaseRefunded:
    return PurchaseRefunded.create(
        subject=customer_id,
        source="/pos/churn-test",
        time=at(day),
        data=PurchaseRefundedData(
            refund_id=f"r-{uuid.uuid4().hex[:10]}",
            purchase_id=purchase_id,
            amount=Money(amount=Decimal(amount), currency="EUR"),
        ),
    )


async def handle(
    db: Database,
    *events: Event,
    clock: Clock | None = None,
    config: ChurnSettings = CONFIG,
    batch: int = 1,
) -> None:
    """Run events through the churn handlers, ``batch`` per transaction (as the runner does)."""
    table = consumers.handlers(ServiceSettings(), config, clock or Clock(datetime.now(UTC)))
    for start in range(0, len(events), batch):
        async with db.unit_of_work() as session:
            for event in events[start : start + batch]:
                await table[type(event)](session, event)


def on_fixed_clock(monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
    """Engagement's handler map with the churn part (``CONFIG``) on a clock fixed at ``now``
    (scored_at and event ids), so customers scored one after another match."""
    churn = consumers.handlers

    def fixed(settings: ServiceSettings, config: Any = None, clock: Any = None) -> Handlers:
        return churn(settings, config or CONFIG, clock or Clock(now))

    monkeypatch.setattr(consumers, "handlers", fixed)


async def customer(db: Database, customer_id: str) -> ChurnCustomer | None:
    async with db.unit_of_work() as session:
        return await session.get(ChurnCustomer, customer_id)


async def customers(db: Database) -> dict[str, ChurnCustomer]:
    async with db.unit_of_work() as session:
        rows = await session.scalars(select(ChurnCustomer))
        return {r.customer_id: r for r in rows}


async def band_changes(db: Database) -> list[ChurnRiskChanged]:
    return [e for e in await published(db) if isinstance(e, ChurnRiskChanged)]


def every(days: Iterable[int], start: date) -> list[date]:
    return [start + timedelta(days=d) for d in days]


def fields(row: Any, *names: str) -> tuple[Any, ...]:
    return tuple(getattr(row, n) for n in names)


def population_events(n: int = 40, start: date = date(2025, 1, 6)) -> list[Event]:
    """A small population drawn from the BG/NBD process (fixed seed): first purchases over
    12 weeks, then purchase days at a Poisson rate until each customer drops out."""
    rng = np.random.default_rng(5)
    events: list[Event] = []
    for i in range(n):
        rate, dropout = rng.gamma(2.0, 1 / 40.0), rng.beta(1.0, 3.0)  # per day
        day = start + timedelta(days=int(rng.integers(0, 84)))
        for _ in range(12):
            events.append(bought(f"pop-{i}", day, f"{10 + i % 9}.00"))
            if rng.random() < dropout:
                break
            day += timedelta(days=1 + int(rng.exponential(1 / rate)))
    return events
