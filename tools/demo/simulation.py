"""The simulated retailer's customers: who buys what, when, and what they bring back."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from shared.events import Money
from shared.events.commerce import (
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseLine,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from shared.events.common import ContactHint

LOCAL = timezone(timedelta(hours=7))
CATALOGUE = [
    ("TEA-01", "Jasmine tea", "18.00"), ("COF-02", "Robusta beans", "24.50"),
    ("MUG-03", "Ceramic mug", "12.00"), ("CAK-04", "Mooncake box", "35.00"),
    ("BIS-05", "Butter biscuits", "8.50"), ("HON-06", "Wild honey", "15.00"),
]  # fmt: skip
# persona: (share, mean gap in days, chance of drifting away after each purchase)
PERSONAS = {
    "regular": (0.15, 24, 0.02), "monthly": (0.25, 40, 0.05), "occasional": (0.2, 100, 0.1),
    "drifter": (0.2, 20, 0.15), "one-off": (0.12, 0, 1.0), "newcomer": (0.08, 20, 0.05),
}  # fmt: skip


@dataclass
class Shopper:
    customer_id: str
    persona: str
    spend: float = 1.0  # budget (below 1) or premium (above) basket
    events: list[PurchaseCompleted | PurchaseRefunded] = field(default_factory=list)
    kept: int = 0
    last: datetime | None = None


def simulate(customers: int, seed: int, now: datetime, days: int = 540) -> list[Shopper]:
    rng = random.Random(seed)
    names = list(PERSONAS)
    weights = [PERSONAS[n][0] for n in names]
    start = now - timedelta(days=days)
    return [_shopper(rng, i, rng.choices(names, weights)[0], start, now) for i in range(customers)]


def _shopper(rng: random.Random, i: int, persona: str, start: datetime, now: datetime) -> Shopper:
    shopper = Shopper(f"demo-{i:04d}", persona, spend=rng.lognormvariate(0, 0.5))
    _, gap, dropout = PERSONAS[persona]
    if persona == "newcomer":
        first = now - timedelta(days=rng.uniform(5, 90))
    else:
        first = start + timedelta(days=rng.uniform(0, 360))
    at, n = first, 0
    while at < now:
        at = at.astimezone(LOCAL).replace(hour=rng.randint(8, 20), minute=rng.randrange(60))
        if at > now:
            break
        shopper.events += purchase(rng, shopper, at, n, now)
        n += 1
        if rng.random() < dropout:
            break
        at += timedelta(days=max(1.0, rng.expovariate(1 / gap)))
    return shopper


def purchase(
    rng: random.Random, shopper: Shopper, at: datetime, n: int, now: datetime
) -> list[PurchaseCompleted | PurchaseRefunded]:
    c = shopper.customer_id
    picks = rng.sample(CATALOGUE, rng.randint(1, 3))
    lines = [
        PurchaseLine(
            sku=s,
            name=name,
            quantity=rng.randint(1, 3),
            unit_price=(Decimal(p) * Decimal(f"{shopper.spend:.2f}")).quantize(Decimal("0.01")),
        )
        for s, name, p in picks
    ]
    total = sum((line.unit_price * line.quantity for line in lines), Decimal(0))
    hint = ContactHint(name=f"Customer {c[-4:]}", email=f"{c}@example.com", language="en")
    bought = PurchaseCompleted.create(
        subject=c,
        source="/demo/shop",
        time=at,
        id=f"{c}-p{n}",
        data=PurchaseCompletedData(
            purchase_id=f"{c}-p{n}",
            channel=rng.choice(["store", "web", "app"]),
            store_id="store-1",
            total=Money(amount=total, currency="EUR"),
            lines=tuple(lines),
            customer=hint if n == 0 else None,
        ),
    )
    shopper.last = at
    if rng.random() > 0.04 or at > now - timedelta(days=3):
        shopper.kept += 1
        return [bought]
    full = rng.random() < 0.6
    shopper.kept += 0 if full else 1
    refund = PurchaseRefunded.create(
        subject=c,
        source="/demo/shop",
        time=at + timedelta(days=2),
        id=f"{c}-r{n}",
        data=PurchaseRefundedData(
            refund_id=f"{c}-r{n}",
            purchase_id=f"{c}-p{n}",
            reason="changed their mind",
            amount=Money(
                amount=total if full else (total / 2).quantize(Decimal("0.01")), currency="EUR"
            ),
        ),
    )
    return [bought, refund]
