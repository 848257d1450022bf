"""A fixed purchase history written straight into the churn tables, and a report client."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from services.engagement.churn import months as rollups
from services.engagement.churn.models import ChurnPurchase
from services.engagement.reports import endpoints
from shared import http
from shared.auth import TokenVerifier
from shared.db import Database
from tests.engagement.support import settings
from tests.helpers import TEST_SECRET


@dataclass(frozen=True)
class Bought:
    customer_id: str
    purchase_id: str
    at: datetime
    amount: Decimal
    refunded: Decimal

    @property
    def kept(self) -> bool:
        return self.refunded < self.amount

    @property
    def month(self) -> str:
        return self.at.astimezone(UTC).strftime("%Y-%m")


def history(customers: int = 80, seed: int = 10) -> list[Bought]:
    """Customers starting between 2024-11 and 2025-12, each buying every few days to months,
    some stopping; a few purchases refunded in full or in part, some near midnight UTC at the
    turn of a month (their local day is in another month)."""
    rng = random.Random(seed)
    rows: list[Bought] = []
    for c in range(customers):
        at = datetime(2024, 11, 1, tzinfo=UTC) + timedelta(days=rng.randrange(0, 420))
        gap = rng.choice([5, 12, 30, 45, 90])
        stop = datetime(2024, 11, 1, tzinfo=UTC) + timedelta(days=rng.randrange(60, 500))
        n = 0
        while at < datetime(2026, 1, 10, tzinfo=UTC) and (n == 0 or at < stop):
            amount = Decimal(rng.randrange(500, 20000)) / 100
            refund = rng.random()
            refunded = amount if refund < 0.06 else (amount / 2 if refund < 0.1 else Decimal(0))
            rows.append(Bought(f"c{c}", f"c{c}-p{n}", at, amount, refunded))
            n += 1
            at += timedelta(days=rng.randint(1, gap * 2), minutes=rng.randrange(0, 1440))
        # month-edge purchases: 23:50 UTC on the last day of a month
        edge = datetime(2025, 6, 30, 23, 50, tzinfo=UTC)
        if c % 9 == 0:
            rows.append(Bought(f"c{c}", f"c{c}-edge", edge, Decimal("10.00"), Decimal(0)))
    return rows


async def store(db: Database, rows: list[Bought], currency: str = "EUR") -> None:
    """The purchases as rows, and each customer's monthly rollups kept as the service does."""
    async with db.unit_of_work() as session:
        session.add_all(
            ChurnPurchase(
                purchase_id=r.purchase_id,
                customer_id=r.customer_id,
                day=(r.at + timedelta(hours=7)).date(),
                occurred_at=r.at,
                amount=r.amount,
                currency=currency,
                refunded=r.refunded,
            )
            for r in rows
        )
        await session.flush()
        for customer_id in sorted({r.customer_id for r in rows}):
            found = await session.scalars(
                select(ChurnPurchase).where(ChurnPurchase.customer_id == customer_id)
            )
            await rollups.refresh_months(session, customer_id, found.all())


def months(start: date, end: date) -> list[str]:
    out, y, m = [], start.year, start.month
    while date(y, m, 1) < end:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def shift(month: str, k: int) -> str:
    y, m = int(month[:4]), int(month[5:])
    total = y * 12 + m - 1 + k
    return f"{total // 12:04d}-{total % 12 + 1:02d}"


async def report_client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    http.install(app, service="engagement", checks={})
    app.include_router(endpoints.router)
    app.state.runtime = SimpleNamespace(db=db)
    app.state.verifier = TokenVerifier(settings(auth_secret=TEST_SECRET))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://engagement") as client:
        yield client
